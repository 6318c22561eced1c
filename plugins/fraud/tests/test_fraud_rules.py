"""Boundaries of the built-in rules: exactly at, just above, just below each threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest

from .helpers import T0

MINUTE = timedelta(minutes=1)
US = timedelta(microseconds=1)


# -- large_transaction --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "flagged"),
    [("9999.99", False), ("10000.00", False), ("10000.01", True), ("250000.00", True)],
)
def test_large_transaction_is_strictly_above_the_line(bank, run, amount, flagged):
    account = bank.account()
    tid = bank.tx(account, amount, T0, kind="transfer")
    result = run()
    alerts = bank.alerts("large_transaction")
    assert result["by_rule"]["large_transaction"] == int(flagged)
    assert [a.transaction_id for a in alerts] == ([tid] if flagged else [])
    if flagged:
        alert = alerts[0]
        assert alert.severity == "high"
        assert alert.account_id == account
        assert alert.status == "open"
        assert alert.dedup_key == f"tx:{tid}"
        assert alert.evidence == {
            "amount": amount,
            "threshold": "10000",
            "kind": "transfer",
            "at": T0.isoformat(),
        }


def test_large_amount_setting(bank_with, run):
    bank = bank_with(FRAUD_LARGE_AMOUNT="500.50")
    account = bank.account()
    bank.tx(account, "500.50", T0)
    above = bank.tx(account, "500.51", T0 + MINUTE)
    run()
    assert [a.transaction_id for a in bank.alerts("large_transaction")] == [above]


def test_only_transactions_inside_the_window_count(bank, run):
    account = bank.account()
    bank.tx(account, "20000.00", T0 - timedelta(hours=1))
    inside = bank.tx(account, "20000.00", T0)
    bank.tx(account, "20000.00", T0 + timedelta(hours=1))  # until is exclusive
    result = run(since=T0, until=T0 + timedelta(hours=1))
    assert result["scanned"] == 1
    assert [a.transaction_id for a in bank.alerts()] == [inside]


# -- velocity -----------------------------------------------------------------------------


def test_ten_in_an_hour_is_not_velocity(bank, run):
    bank.burst(bank.account(), T0, 10, 5 * MINUTE)
    assert run()["by_rule"]["velocity"] == 0


def test_eleven_in_an_hour_is_velocity_with_evidence(bank, run):
    account = bank.account()
    ids = bank.burst(account, T0, 11, 5 * MINUTE)  # 0 .. 50 minutes
    result = run()
    assert result["by_rule"]["velocity"] == 1
    (alert,) = bank.alerts("velocity")
    assert alert.account_id == account
    assert alert.transaction_id == ids[0]
    assert alert.severity == "medium"
    assert alert.score == pytest.approx(1.1)
    assert alert.evidence == {
        "count": 11,
        "transaction_ids": ids,
        "first_at": T0.isoformat(),
        "last_at": (T0 + 50 * MINUTE).isoformat(),
        "total": "135.74",
        "limit": 10,
        "window_minutes": 60,
    }


def test_eleven_spread_over_61_minutes_is_not_velocity(bank, run):
    account = bank.account()
    bank.burst(account, T0, 10, 6 * MINUTE)  # 0 .. 54 minutes
    bank.tx(account, "1.00", T0 + 61 * MINUTE)
    assert run()["by_rule"]["velocity"] == 0


@pytest.mark.parametrize(
    ("last_after", "flagged"),
    [(60 * MINUTE - US, True), (60 * MINUTE, False)],
    ids=["59:59.999999", "60:00"],
)
def test_velocity_window_is_half_open(bank, run, last_after, flagged):
    account = bank.account()
    bank.burst(account, T0, 10, MINUTE)
    bank.tx(account, "1.00", T0 + last_after)
    assert run()["by_rule"]["velocity"] == int(flagged)


def test_burst_straddling_a_clock_hour_is_found(bank, run):
    account = bank.account()
    ten_fifty = T0.replace(minute=50)
    ids = bank.burst(account, ten_fifty, 6, 2 * MINUTE)  # 6 in the 10 o'clock hour …
    ids += bank.burst(account, ten_fifty.replace(hour=11, minute=1), 5, 2 * MINUTE)  # … 5 at 11
    assert run()["by_rule"]["velocity"] == 1
    (alert,) = bank.alerts("velocity")
    assert alert.evidence["transaction_ids"] == ids


def test_velocity_counts_per_account(bank, run):
    first, second = bank.account(), bank.account()
    bank.burst(first, T0, 6, MINUTE)
    bank.burst(second, T0, 6, MINUTE)
    assert run()["by_rule"]["velocity"] == 0


def test_one_long_burst_is_one_alert_and_separate_bursts_are_two(bank, run):
    account = bank.account()
    long_burst = bank.burst(account, T0, 30, 4 * MINUTE)  # two hours, always over the limit
    later = bank.burst(account, T0 + timedelta(hours=5), 25, MINUTE)
    assert run()["by_rule"]["velocity"] == 2
    alerts = bank.alerts("velocity")
    assert [a.transaction_id for a in alerts] == [long_burst[0], later[0]]
    assert alerts[0].severity == "medium"  # 15 in its first hour
    assert alerts[1].severity == "high"  # 25 in its first hour: at least twice the limit


def test_velocity_settings(bank_with, run):
    bank = bank_with(FRAUD_VELOCITY_LIMIT="3", FRAUD_VELOCITY_WINDOW_MINUTES="10")
    slow, fast = bank.account(), bank.account()
    bank.burst(slow, T0, 4, 4 * MINUTE)  # 0 .. 12 minutes: never 4 within 10
    bank.burst(fast, T0, 4, 3 * MINUTE)  # 0 .. 9 minutes
    run()
    assert [a.account_id for a in bank.alerts("velocity")] == [fast]


# -- structuring --------------------------------------------------------------------------


def deposits(bank, account, *items):
    return bank.txs(account, list(items), kind="deposit")


def test_two_deposits_just_under_the_line_within_a_day(bank, run):
    account = bank.account()
    ids = deposits(bank, account, ("9500.00", T0), ("9800.00", T0 + timedelta(hours=5)))
    assert run()["by_rule"]["structuring"] == 1
    (alert,) = bank.alerts("structuring")
    assert alert.account_id == account
    assert alert.severity == "high"
    assert alert.evidence["count"] == 2
    assert alert.evidence["amounts"] == ["9500.00", "9800.00"]
    assert alert.evidence["transaction_ids"] == ids
    assert alert.evidence["total"] == "19300.00"
    assert alert.evidence["band"] == ["9000.00", "10000.00"]
    assert alert.score == pytest.approx(1.93)


def test_one_deposit_is_not_structuring(bank, run):
    deposits(bank, bank.account(), ("9999.99", T0))
    assert run()["by_rule"]["structuring"] == 0


def test_three_deposits_are_critical(bank, run):
    account = bank.account()
    deposits(bank, account, *[("9100.00", T0 + timedelta(hours=h)) for h in (0, 3, 6)])
    assert run()["by_rule"]["structuring"] == 1
    assert bank.alerts("structuring")[0].severity == "critical"


@pytest.mark.parametrize(
    ("first", "flagged"),
    [
        ("8999.99", False),  # just below the band
        ("9000.00", True),  # exactly at the band's low edge: inside
        ("9999.99", True),  # just below the line
        ("10000.00", False),  # at the line: not under it (and not above it either)
    ],
)
def test_structuring_band_edges(bank, run, first, flagged):
    account = bank.account()
    deposits(bank, account, (first, T0), ("9500.00", T0 + timedelta(hours=1)))
    result = run()
    assert result["by_rule"]["structuring"] == int(flagged)
    assert result["by_rule"]["large_transaction"] == 0


@pytest.mark.parametrize(
    ("gap", "flagged"),
    [(timedelta(hours=24) - US, True), (timedelta(hours=24), False), (timedelta(hours=30), False)],
    ids=["23:59:59.999999", "24h", "30h"],
)
def test_structuring_window(bank, run, gap, flagged):
    deposits(bank, bank.account(), ("9500.00", T0), ("9500.00", T0 + gap))
    assert run()["by_rule"]["structuring"] == int(flagged)


@pytest.mark.parametrize(("second", "flagged"), [("5000.00", False), ("5000.01", True)])
def test_structuring_sum_must_exceed_the_line(bank_with, run, second, flagged):
    bank = bank_with(FRAUD_STRUCTURING_BAND_LOW="0.5")
    deposits(bank, bank.account(), ("5000.00", T0), (second, T0 + timedelta(hours=1)))
    assert run()["by_rule"]["structuring"] == int(flagged)


def test_structuring_counts_only_deposits(bank, run):
    account = bank.account()
    bank.tx(account, "9500.00", T0, kind="withdrawal")
    bank.tx(account, "9500.00", T0 + timedelta(hours=1), kind="payment")
    deposits(bank, account, ("9500.00", T0 + timedelta(hours=2)))
    assert run()["by_rule"]["structuring"] == 0


def test_structuring_min_count_setting(bank_with, run):
    bank = bank_with(FRAUD_STRUCTURING_MIN_COUNT="3")
    two, three = bank.account(), bank.account()
    deposits(bank, two, ("9500.00", T0), ("9500.00", T0 + timedelta(hours=1)))
    deposits(bank, three, *[("9500.00", T0 + timedelta(hours=h)) for h in (0, 1, 2)])
    run()
    alerts = bank.alerts("structuring")
    assert [a.account_id for a in alerts] == [three]
    assert alerts[0].severity == "high"  # exactly the minimum
