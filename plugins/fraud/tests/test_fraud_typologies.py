"""The typologies (plugins/fraud/typologies.py): each limit just below, at and just above,
business days in a time zone (DST included), the anchors, the defaults, and the same
findings through a bank's own tables (DATA_MAPPING)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from banktasks_testing import make_account, make_transactions, make_user
from banktasks_testing.bankschema import BANK_MAPPING, copy_from_native, create_bank_schema
from core import ConfigError
from core.models import Account, User
from plugins.fraud import FraudAlert
from plugins.fraud.typologies import TYPOLOGY_RULES

from .helpers import T0, analyse

US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TYPOLOGIES = sorted(rule.name for rule in TYPOLOGY_RULES)


@dataclass
class Ledger:
    """Customers, accounts and transactions with channels and counterparties; alerts."""

    db: Any

    def customer(self) -> int:
        """A new user; returns its id."""
        with self.db.session() as session:
            return make_user(session).id

    def account(self, user_id: int | None = None) -> int:
        """A new account (of `user_id`, else of a new user); returns its id."""
        with self.db.session() as session:
            owner = None if user_id is None else session.get(User, user_id)
            return make_account(session, owner).id

    def add(self, account_id: int, amount: str, at: datetime, kind: str = "payment", **fields):
        """One transaction (completed unless `status=`); returns its id."""
        return self.add_all(account_id, [dict(amount=amount, at=at, kind=kind, **fields)])[0]

    def add_all(self, account_id: int, rows: list[dict[str, Any]]) -> list[int]:
        """Several transactions (`make_transaction`'s keyword arguments each); their ids."""
        with self.db.session() as session:
            account = session.get(Account, account_id)
            return [tx.id for tx in make_transactions(session, account, rows)]

    def alerts(self, rule: str) -> list[FraudAlert]:
        """The rule's alerts, oldest id first."""
        query = select(FraudAlert).where(FraudAlert.rule == rule).order_by(FraudAlert.id)
        with self.db.session() as session:
            return list(session.scalars(query))


@pytest.fixture
def ledger(make_app: Callable[..., Any]) -> Callable[..., Ledger]:
    """`ledger("cash_threshold", ctr_amount="500")`: an app running that rule only (none
    given: every rule), with those fraud settings."""

    def build(*rules: str, **fraud: Any) -> Ledger:
        settings = {**fraud, **({"rules": ",".join(rules)} if rules else {})}
        return Ledger(make_app("fraud", plugin_settings={"fraud": settings}).runtime.db)

    return build


def at(text: str) -> datetime:
    """`"2024-05-01 10:30"` (or with seconds and microseconds) as an aware UTC moment."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def around(moment: datetime, days: int = 2) -> dict[str, datetime]:
    """An analysis window of `days` either side of `moment`."""
    return {"since": moment - days * DAY, "until": moment + days * DAY}


def flagged(book: Ledger, rule: str, cases: dict[str, int]) -> set[str]:
    """The labels of `cases` ({label: account id}) whose account has an alert of `rule`."""
    accounts = {alert.account_id for alert in book.alerts(rule)}
    return {label for label, account in cases.items() if account in accounts}


# -- defaults -------------------------------------------------------------------------------


def test_the_typologies_are_off_until_enabled_and_have_their_defaults(make_app):
    make_app("fraud")
    assert not set(TYPOLOGIES) & set(analyse()["by_rule"])
    app = make_app("fraud", plugin_settings={"fraud": {"enable_rules": ",".join(TYPOLOGIES)}})
    result = analyse()
    assert set(TYPOLOGIES) | {"large_transaction", "structuring", "velocity"} == set(
        result["by_rule"]
    )
    assert {rule.version for rule in TYPOLOGY_RULES} == {"1"}
    s = app.runtime.settings_for("fraud")
    assert (s.ctr_amount, s.business_timezone) == (Decimal("10000"), "UTC")
    assert (s.deviation_factor, s.deviation_history_days) == (Decimal("5"), 90)
    assert (s.deviation_min_history, s.deviation_min_amount) == (10, Decimal("5000"))
    assert (s.fan_min_counterparties, s.fan_window_hours) == (6, 24)
    assert s.fan_ignore_channels == ["card"]
    assert (s.pass_through_percent, s.pass_through_hours) == (80, 48)
    assert s.pass_through_min_amount == Decimal("5000")
    assert (s.dormant_days, s.dormant_activity_days) == (180, 3)
    assert s.dormant_amount == Decimal("5000")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FRAUD_BUSINESS_TIMEZONE", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("FRAUD_BUSINESS_TIMEZONE", "america/new_york", "unknown time zone"),
        ("FRAUD_CTR_AMOUNT", "10000.001", "at most two decimal places"),
        ("FRAUD_DEVIATION_FACTOR", "1", "FRAUD_DEVIATION_FACTOR='1'"),
        ("FRAUD_FAN_IGNORE_CHANNELS", "card,carrier-pigeon", "unknown channel"),
        ("FRAUD_DORMANT_ACTIVITY_DAYS", "180", "must be less than FRAUD_DORMANT_DAYS=180"),
        ("FRAUD_FAN_WINDOW_HOURS", "25", "FRAUD_OVERLAP_HOURS=24 must cover"),
    ],
)
def test_bad_typology_settings_stop_start_up(bank_with, variable, value, message):
    with pytest.raises(ConfigError, match=message):
        bank_with(**{variable: value})


# -- cash_threshold -------------------------------------------------------------------------


def cash(book: Ledger, account: int, amount: str, moment: datetime, kind="deposit", **fields):
    return book.add(account, amount, moment, kind, channel="cash", **fields)


def test_ctr_is_strictly_above_the_line(ledger):
    book = ledger("cash_threshold")
    cases, users, rows = {}, {}, {}
    for total, withdrawn in (
        ("9999.99", "3999.99"),
        ("10000.00", "4000.00"),
        ("10000.01", "4000.01"),
    ):
        users[total] = book.customer()
        cases[total] = book.account(users[total])
        rows[total] = [
            cash(book, cases[total], "6000.00", T0),
            cash(book, cases[total], withdrawn, T0 + HOUR, kind="withdrawal"),
        ]
    assert analyse()["by_rule"] == {"cash_threshold": 1}
    assert flagged(book, "cash_threshold", cases) == {"10000.01"}
    (alert,) = book.alerts("cash_threshold")
    user, account, ids = users["10000.01"], cases["10000.01"], rows["10000.01"]
    assert (alert.severity, alert.account_id, alert.transaction_id) == ("high", account, ids[1])
    assert alert.dedup_key == f"ctr:{user}:2024-05-01"
    assert alert.score == pytest.approx(1.0)
    assert alert.evidence == {
        "user_id": user,
        "business_day": "2024-05-01",
        "time_zone": "UTC",
        "total": "10000.01",
        "count": 2,
        "deposits_total": "6000.00",
        "withdrawals_total": "4000.01",
        "threshold": "10000",
        "transaction_ids": ids,
        "account_ids": [account],
    }


def test_ctr_adds_up_every_account_of_the_customer(ledger):
    book = ledger("cash_threshold")
    user = book.customer()
    small, large = book.account(user), book.account(user)
    ids = [cash(book, small, "4500.00", T0), cash(book, large, "6000.00", T0 + HOUR)]
    cash(book, book.account(), "6000.00", T0)  # two other customers: not added together
    cash(book, book.account(), "4500.00", T0)
    assert analyse()["by_rule"] == {"cash_threshold": 1}
    (alert,) = book.alerts("cash_threshold")
    assert alert.account_id == large  # the account with the most cash that day
    assert alert.evidence["account_ids"] == sorted([small, large])
    assert alert.evidence["transaction_ids"] == ids
    assert (alert.evidence["user_id"], alert.evidence["total"]) == (user, "10500.00")


def test_ctr_counts_completed_cash_deposits_and_withdrawals_only(ledger):
    book = ledger("cash_threshold")
    others = {
        "ach": {"kind": "deposit", "channel": "ach"},
        "card": {"kind": "withdrawal", "channel": "card"},
        "no-channel": {"kind": "deposit", "channel": None},
        "cash-payment": {"kind": "payment", "channel": "cash"},
        "cash-transfer": {"kind": "transfer", "channel": "cash"},
        "failed": {"kind": "deposit", "channel": "cash", "status": "failed"},
        "pending": {"kind": "deposit", "channel": "cash", "status": "pending"},
    }
    for other in others.values():
        account = book.account()
        cash(book, account, "6000.00", T0)
        book.add(account, "4500.00", T0 + HOUR, **other)
    assert analyse()["by_rule"] == {"cash_threshold": 0}


def test_ctr_business_day_is_the_utc_date_by_default(ledger):
    book = ledger("cash_threshold")
    cases = {}
    for second in ("2024-05-01 23:59:59.999999", "2024-05-02 00:00"):
        cases[second] = book.account()
        cash(book, cases[second], "6000.00", at("2024-05-01 00:00"))
        cash(book, cases[second], "4500.00", at(second))
    analyse()
    assert flagged(book, "cash_threshold", cases) == {"2024-05-01 23:59:59.999999"}


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", {"03:30 and 04:30 UTC": "2024-05-01"}),
        ("America/New_York", {"00:00 to 23:59:59.999999 EDT": "2024-05-01"}),
    ],
)
def test_ctr_business_day_in_a_time_zone(ledger, zone, expected):
    book = ledger("cash_threshold", business_timezone=zone)
    pairs = {
        # 23:30 and 00:30 in New York (EDT, UTC-4): two business days there, one in UTC
        "03:30 and 04:30 UTC": ("2024-05-01 03:30", "2024-05-01 04:30"),
        # 00:00 to 23:59:59.999999 EDT: one business day in New York, two in UTC
        "00:00 to 23:59:59.999999 EDT": ("2024-05-01 04:00", "2024-05-02 03:59:59.999999"),
        "00:00 to 00:00 EDT": ("2024-05-01 04:00", "2024-05-02 04:00"),
    }
    cases = {}
    for label, (first, second) in pairs.items():
        cases[label] = book.account()
        cash(book, cases[label], "6000.00", at(first))
        cash(book, cases[label], "4500.00", at(second), kind="withdrawal")
    analyse(**around(at("2024-05-01 12:00")))
    assert flagged(book, "cash_threshold", cases) == set(expected)
    for alert in book.alerts("cash_threshold"):
        assert (alert.evidence["business_day"], alert.evidence["time_zone"]) == (
            "2024-05-01",
            zone,
        )


def test_ctr_business_days_of_23_and_25_hours(ledger):
    book = ledger("cash_threshold", business_timezone="America/New_York")
    pairs = {
        # 2024-11-03 in New York has 25 hours: 04:00 UTC (00:00 EDT) to 05:00 UTC next day
        "nov-last-microsecond": ("2024-11-03 04:00", "2024-11-04 04:59:59.999999"),
        "nov-next-day": ("2024-11-03 04:00", "2024-11-04 05:00"),
        "nov-day-before": ("2024-11-03 03:59:59.999999", "2024-11-03 05:30"),
        # 2024-03-10 has 23 hours: 05:00 UTC (00:00 EST) to 04:00 UTC next day
        "mar-last-microsecond": ("2024-03-10 05:00", "2024-03-11 03:59:59.999999"),
        "mar-next-day": ("2024-03-10 05:00", "2024-03-11 04:00"),
        "mar-day-before": ("2024-03-10 04:59:59.999999", "2024-03-10 12:00"),
    }
    cases = {}
    for label, (first, second) in pairs.items():
        cases[label] = book.account()
        cash(book, cases[label], "6000.00", at(first))
        cash(book, cases[label], "4500.00", at(second))
    analyse(**around(at("2024-11-03 12:00")))
    analyse(**around(at("2024-03-10 12:00")))
    assert flagged(book, "cash_threshold", cases) == {
        "nov-last-microsecond",
        "mar-last-microsecond",
    }
    days = {a.evidence["business_day"] for a in book.alerts("cash_threshold")}
    assert days == {"2024-11-03", "2024-03-10"}


def test_ctr_one_alert_per_customer_and_day_anchored_where_the_line_is_crossed(ledger):
    book = ledger("cash_threshold")
    user = book.customer()
    account = book.account(user)
    day1 = [cash(book, account, "6000.00", T0 + n * HOUR) for n in range(3)]
    day2 = [cash(book, account, "6000.00", T0 + DAY + n * HOUR) for n in range(2)]
    # before the crossing, nothing; from it on, the whole day (rows before `since` too)
    assert analyse(since=T0 - DAY, until=T0 + HOUR)["by_rule"] == {"cash_threshold": 0}
    assert analyse(since=T0 + HOUR, until=T0 + 2 * HOUR)["by_rule"] == {"cash_threshold": 1}
    assert analyse(since=T0 + 2 * HOUR, until=T0 + DAY)["by_rule"] == {"cash_threshold": 0}
    assert analyse()["by_rule"] == {"cash_threshold": 1}  # day 2; day 1 stored already
    alerts = book.alerts("cash_threshold")
    assert [a.dedup_key for a in alerts] == [f"ctr:{user}:2024-05-01", f"ctr:{user}:2024-05-02"]
    assert [a.transaction_id for a in alerts] == [day1[1], day2[1]]
    assert alerts[0].evidence["transaction_ids"] == day1
    assert alerts[0].evidence["total"] == "18000.00"
    assert analyse()["alerts_created"] == 0


# -- amount_deviation -----------------------------------------------------------------------


def history(book: Ledger, account: int, amounts: list[str], end: datetime = T0) -> list[int]:
    """One payment a day, the last a day before `end`."""
    n = len(amounts)
    return book.add_all(
        account,
        [
            {"amount": a, "at": end - (n - i) * DAY, "kind": "payment"}
            for i, a in enumerate(amounts)
        ],
    )


def test_deviation_is_strictly_above_factor_times_the_p95(ledger):
    book = ledger("amount_deviation", deviation_min_amount="0")
    cases, ids = {}, {}
    for amount in ("499.99", "500.00", "500.01"):
        cases[amount] = book.account()
        history(book, cases[amount], ["100.00"] * 10)
        ids[amount] = book.add(cases[amount], amount, T0, "transfer")
    assert analyse()["by_rule"] == {"amount_deviation": 1}
    assert flagged(book, "amount_deviation", cases) == {"500.01"}
    (alert,) = book.alerts("amount_deviation")
    assert (alert.transaction_id, alert.severity) == (ids["500.01"], "medium")
    assert alert.dedup_key == f"tx:{ids['500.01']}"
    assert alert.score == pytest.approx(1.0)
    assert alert.evidence == {
        "amount": "500.01",
        "baseline": "100.00",
        "baseline_kind": "p95",
        "factor": "5",
        "history_count": 10,
        "history_days": 90,
        "kind": "transfer",
        "at": T0.isoformat(),
    }


def test_deviation_needs_the_minimum_history_within_its_days(ledger):
    book = ledger("amount_deviation", deviation_min_amount="0")
    cases = {}
    for label, rows, oldest in (
        ("9 rows", 9, None),
        ("10 rows", 10, None),
        ("11 rows", 11, None),
        ("9 + one 90 days before", 9, 90 * DAY),
        ("9 + one 90 days and 1us before", 9, 90 * DAY + US),
    ):
        cases[label] = book.account()
        history(book, cases[label], ["100.00"] * rows)
        if oldest:
            book.add(cases[label], "100.00", T0 - oldest)
        book.add(cases[label], "900.00", T0)
    analyse()
    assert flagged(book, "amount_deviation", cases) == {
        "10 rows",
        "11 rows",
        "9 + one 90 days before",
    }


def test_deviation_history_is_before_the_transaction_and_completed_only(ledger):
    book = ledger("amount_deviation", deviation_min_amount="0")
    account, other = book.account(), book.account()
    history(book, account, ["100.00"] * 9)
    book.add(account, "100.00", T0 - DAY / 2, status="failed")  # not history
    book.add(account, "100.00", T0)  # at the same moment: not before it
    book.add(account, "900.00", T0)
    book.add(account, "100.00", T0 + HOUR)  # after it
    history(book, other, ["100.00"] * 10)
    book.add(other, "900.00", T0, status="reversed")  # a reversed one is not looked at
    assert analyse()["by_rule"] == {"amount_deviation": 0}


def test_deviation_baseline_is_the_nearest_rank_95th_percentile(ledger):
    # 20 amounts: the 95th percentile is the 19th smallest
    book = ledger("amount_deviation", deviation_min_amount="0")
    cases = {}
    for large in (1, 2):
        cases[f"{large} large"] = book.account()
        history(book, cases[f"{large} large"], ["1000.00"] * large + ["100.00"] * (20 - large))
        book.add(cases[f"{large} large"], "600.00", T0)
    analyse()
    assert flagged(book, "amount_deviation", cases) == {"1 large"}
    assert book.alerts("amount_deviation")[0].evidence["baseline"] == "100.00"


@pytest.mark.parametrize(
    ("settings", "rows", "below", "above"),
    [
        ({}, 10, "5000.00", "5000.01"),  # the default floor: only amounts above 5000
        ({"deviation_min_amount": "0", "deviation_factor": "2.5"}, 10, "250.00", "250.01"),
        ({"deviation_min_amount": "0", "deviation_min_history": "3"}, 3, "500.00", "500.01"),
    ],
    ids=["floor", "factor", "min-history"],
)
def test_deviation_settings(ledger, settings, rows, below, above):
    book = ledger("amount_deviation", **settings)
    cases = {}
    for amount in (below, above):
        cases[amount] = book.account()
        history(book, cases[amount], ["100.00"] * rows)
        book.add(cases[amount], amount, T0)
    analyse()
    assert flagged(book, "amount_deviation", cases) == {above}


# -- fan_in_out -----------------------------------------------------------------------------


def fan(book, account, parties, start=T0, spacing=HOUR, kind="payment", channel="wire", **kw):
    """One transaction per counterparty, `spacing` apart."""
    return book.add_all(
        account,
        [
            {
                "amount": "100.00",
                "at": start + i * spacing,
                "kind": kind,
                "channel": channel,
                "counterparty": party,
                **kw,
            }
            for i, party in enumerate(parties)
        ],
    )


PARTIES = [f"Party {n}" for n in range(1, 11)]


def test_fan_out_from_six_distinct_counterparties(ledger):
    book = ledger("fan_in_out")
    cases, ids = {}, {}
    for distinct in (5, 6, 7):
        cases[distinct] = account = book.account()
        ids[distinct] = fan(book, account, PARTIES[:distinct])
        ids[distinct] += fan(book, account, PARTIES[:1], start=T0 + 10 * HOUR)  # a repeat
    book.add(book.account(), "1.00", T0, counterparty="Party 9")  # another account's
    assert analyse()["by_rule"] == {"fan_in_out": 2}
    assert flagged(book, "fan_in_out", cases) == {6, 7}
    alert = next(a for a in book.alerts("fan_in_out") if a.account_id == cases[6])
    first = ids[6][0]
    assert alert.transaction_id == first
    assert alert.dedup_key == f"account:{cases[6]}:out:burst:{first}"
    assert (alert.severity, alert.score) == ("medium", 1.0)
    assert alert.evidence == {
        "direction": "out",
        "distinct_counterparties": 6,
        "counterparties": PARTIES[:6],
        "count": 7,
        "total": "700.00",
        "first_at": T0.isoformat(),
        "last_at": (T0 + 10 * HOUR).isoformat(),
        "transaction_ids": ids[6],
        "min_counterparties": 6,
        "window_hours": 24,
    }


def test_fan_window_is_half_open_and_counterparties_compared_trimmed_in_lower_case(ledger):
    book = ledger("fan_in_out")
    cases = {}
    for label, last in (("23:59:59.999999", 24 * HOUR - US), ("24h", 24 * HOUR)):
        cases[label] = book.account()
        fan(book, cases[label], PARTIES[:5])
        fan(book, cases[label], PARTIES[5:6], start=T0 + last)
    cases["same names"] = book.account()
    same = ["ACME", " acme ", "Acme", "Party 2", "Party 3", "Party 4", "Party 5"]
    fan(book, cases["same names"], same)
    analyse()
    assert flagged(book, "fan_in_out", cases) == {"23:59:59.999999"}


def test_fan_in_and_out_are_counted_apart(ledger):
    book = ledger("fan_in_out")
    mixed, inbound, outbound = book.account(), book.account(), book.account()
    fan(book, mixed, PARTIES[:3], kind="deposit", channel="ach")
    fan(book, mixed, PARTIES[3:6])
    ins = fan(book, inbound, PARTIES[:6], kind="deposit", channel="ach")
    fan(book, outbound, PARTIES[:2], kind="transfer")
    fan(book, outbound, PARTIES[2:5], start=T0 + 3 * HOUR)
    fan(book, outbound, PARTIES[5:6], start=T0 + 6 * HOUR, kind="withdrawal", channel="cash")
    assert analyse()["by_rule"] == {"fan_in_out": 2}
    found = {(a.account_id, a.evidence["direction"]) for a in book.alerts("fan_in_out")}
    assert found == {(inbound, "in"), (outbound, "out")}
    assert book.alerts("fan_in_out")[0].dedup_key == f"account:{inbound}:in:burst:{ins[0]}"


def test_fan_leaves_out_card_fees_blank_counterparties_and_incomplete_rows(ledger):
    book = ledger("fan_in_out")
    for fields in (
        {"channel": "card"},
        {"kind": "fee"},
        {"counterparty": None},
        {"counterparty": "  "},
        {"status": "failed"},
    ):
        account = book.account()
        fan(book, account, PARTIES[:5])
        fan(book, account, PARTIES[5:6], start=T0 + 6 * HOUR, **fields)
    assert analyse()["by_rule"] == {"fan_in_out": 0}


def test_fan_counts_card_payments_when_no_channel_is_ignored(ledger):
    book = ledger("fan_in_out", fan_ignore_channels="")
    fan(book, book.account(), PARTIES[:6], channel="card")
    assert analyse()["by_rule"] == {"fan_in_out": 1}


def test_fan_one_alert_per_burst(ledger):
    book = ledger("fan_in_out", fan_min_counterparties="3")
    account = book.account()
    first = fan(book, account, PARTIES, spacing=4 * HOUR)  # hot for 36 hours on end
    second = fan(book, account, PARTIES[:3], start=T0 + 70 * HOUR)  # a gap of over a day
    assert analyse(**around(T0, days=4))["by_rule"] == {"fan_in_out": 2}
    assert [a.transaction_id for a in book.alerts("fan_in_out")] == [first[0], second[0]]
    # the burst belongs to the run where it starts
    assert analyse(since=T0 + HOUR, until=T0 + 3 * DAY)["alerts_created"] == 0


# -- pass_through ---------------------------------------------------------------------------


def test_pass_through_from_eighty_percent(ledger):
    book = ledger("pass_through")
    cases, inbound, out = {}, {}, {}
    for second in ("2999.99", "3000.00", "3000.01"):
        cases[second] = account = book.account()
        inbound[second] = book.add(account, "10000.00", T0, "deposit")
        out[second] = [
            book.add(account, "5000.00", T0 + HOUR, "withdrawal"),
            book.add(account, second, T0 + 30 * HOUR, "transfer"),
        ]
    analyse()
    assert flagged(book, "pass_through", cases) == {"3000.00", "3000.01"}
    (alert,) = [a for a in book.alerts("pass_through") if a.account_id == cases["3000.00"]]
    tid = inbound["3000.00"]
    assert (alert.transaction_id, alert.dedup_key) == (tid, f"tx:{tid}")
    assert (alert.severity, alert.score) == ("high", 1.0)
    assert alert.evidence == {
        "inbound_id": tid,
        "inbound_amount": "10000.00",
        "inbound_at": T0.isoformat(),
        "outbound_ids": out["3000.00"],
        "outbound_count": 2,
        "outbound_total": "8000.00",
        "last_outbound_at": (T0 + 30 * HOUR).isoformat(),
        "percent": "80.00",
        "min_percent": 80,
        "hours": 48,
    }


def test_pass_through_window_is_half_open_from_the_deposit_and_above_the_floor(ledger):
    book = ledger("pass_through")
    cases = {}
    for label, amount, after in (
        ("before", "10000.00", -US),
        ("same moment", "10000.00", timedelta(0)),
        ("47:59:59.999999", "10000.00", 48 * HOUR - US),
        ("48h", "10000.00", 48 * HOUR),
        ("5000.00", "5000.00", HOUR),
        ("5000.01", "5000.01", HOUR),
    ):
        cases[label] = book.account()
        book.add(cases[label], amount, T0, "deposit")
        book.add(cases[label], amount, T0 + after, "payment")
    analyse(**around(T0, days=3))
    assert flagged(book, "pass_through", cases) == {"same moment", "47:59:59.999999", "5000.01"}


def test_pass_through_outflows(ledger):
    book = ledger("pass_through")
    cases = {}
    for label, fields in (
        ("withdrawal", {"kind": "withdrawal"}),
        ("payment", {"kind": "payment"}),
        ("transfer", {"kind": "transfer"}),
        ("fee", {"kind": "fee"}),
        ("deposit", {"kind": "deposit"}),
        ("pending", {"kind": "transfer", "status": "pending"}),
    ):
        cases[label] = book.account()
        book.add(cases[label], "10000.00", T0, "deposit")
        book.add(cases[label], "9000.00", T0 + HOUR, **fields)
    book.add(book.account(), "9000.00", T0 + HOUR, "withdrawal")  # another account's
    analyse()
    assert flagged(book, "pass_through", cases) == {"withdrawal", "payment", "transfer"}


def test_pass_through_is_anchored_at_the_outflow_that_reaches_the_percentage(ledger):
    book = ledger("pass_through", pass_through_percent="100", pass_through_hours="72")
    account = book.account()
    inbound = book.add(account, "10000.00", T0, "deposit")
    book.add(account, "6000.00", T0 + HOUR, "withdrawal")
    book.add(account, "4000.00", T0 + 60 * HOUR, "withdrawal")
    assert analyse(since=T0 - DAY, until=T0 + 60 * HOUR)["by_rule"] == {"pass_through": 0}
    window = {"since": T0 + 60 * HOUR, "until": T0 + 61 * HOUR}  # the deposit is before it
    assert analyse(**window)["by_rule"] == {"pass_through": 1}
    assert [a.transaction_id for a in book.alerts("pass_through")] == [inbound]
    assert book.alerts("pass_through")[0].evidence["percent"] == "100.00"


# -- dormant_reactivation -------------------------------------------------------------------


def test_dormant_after_exactly_the_quiet_days(ledger):
    book = ledger("dormant_reactivation")
    cases, first = {}, {}
    for label, quiet in (("180d", 180 * DAY), ("180d-1us", 180 * DAY - US)):
        cases[label] = book.account()
        book.add(cases[label], "20.00", T0 - quiet)
        first[label] = book.add(cases[label], "5000.00", T0, "deposit")
    assert analyse()["by_rule"] == {"dormant_reactivation": 1}
    assert flagged(book, "dormant_reactivation", cases) == {"180d"}
    (alert,) = book.alerts("dormant_reactivation")
    tid = first["180d"]
    assert (alert.transaction_id, alert.dedup_key) == (tid, f"tx:{tid}")
    assert (alert.severity, alert.score) == ("medium", 1.0)
    assert alert.evidence == {
        "last_activity_before": (T0 - 180 * DAY).isoformat(),
        "gap_days": 180,
        "first_transaction_id": tid,
        "first_at": T0.isoformat(),
        "total": "5000.00",
        "count": 1,
        "transaction_ids": [tid],
        "threshold": "5000",
        "dormant_days": 180,
        "activity_days": 3,
    }


def test_dormant_activity_amount_within_the_days(ledger):
    book = ledger("dormant_reactivation")
    cases = {}
    for label, amounts, last_after in (
        ("4999.99", ["4999.99"], None),
        ("5000.00", ["5000.00"], None),
        ("3 days - 1us", ["3000.00", "2000.00"], 3 * DAY - US),
        ("3 days", ["3000.00", "2000.00"], 3 * DAY),
        ("4999.99 in two", ["3000.00", "1999.99"], DAY),
    ):
        cases[label] = book.account()
        book.add(cases[label], "20.00", T0 - 200 * DAY)
        book.add(cases[label], amounts[0], T0, "withdrawal")
        if last_after is not None:
            book.add(cases[label], amounts[1], T0 + last_after, "transfer")
    analyse(**around(T0, days=4))
    assert flagged(book, "dormant_reactivation", cases) == {"5000.00", "3 days - 1us"}


def test_dormant_counts_completed_customer_activity(ledger):
    book = ledger("dormant_reactivation")
    cases = {}
    for label, between in (
        ("fee", {"kind": "fee"}),  # the bank's fee is no customer activity
        ("failed", {"kind": "payment", "status": "failed"}),
        ("payment", {"kind": "payment"}),
    ):
        cases[label] = book.account()
        book.add(cases[label], "20.00", T0 - 200 * DAY)
        book.add(cases[label], "15.00", T0 - 10 * DAY, **between)
        book.add(cases[label], "6000.00", T0, "deposit")
    cases["never active"] = book.account()
    book.add(cases["never active"], "6000.00", T0, "deposit")
    analyse()
    assert flagged(book, "dormant_reactivation", cases) == {"fee", "failed"}


def test_dormant_is_one_alert_per_reactivation_keyed_by_its_first_transaction(ledger):
    book = ledger("dormant_reactivation")
    account = book.account()
    book.add(account, "20.00", T0 - 400 * DAY)
    first = book.add(account, "1000.00", T0, "deposit")
    book.add(account, "4500.00", T0 + 2 * DAY, "withdrawal")  # reaches the amount
    book.add(account, "9000.00", T0 + 2 * DAY + HOUR, "withdrawal")
    assert analyse(since=T0 - DAY, until=T0 + DAY)["by_rule"] == {"dormant_reactivation": 0}
    assert analyse(since=T0 + DAY, until=T0 + 3 * DAY)["by_rule"] == {"dormant_reactivation": 1}
    # a long window: the gap from LAG over the rows read instead of the earlier MAX
    assert analyse(since=T0 - 500 * DAY, until=T0 + 3 * DAY)["alerts_created"] == 0
    (alert,) = book.alerts("dormant_reactivation")
    assert (alert.transaction_id, alert.evidence["count"]) == (first, 3)
    assert (alert.evidence["total"], alert.evidence["gap_days"]) == ("14500.00", 400)
    # the quiet spell measured from rows inside a long window
    other = book.account()
    book.add(other, "20.00", T0 - 250 * DAY)
    book.add(other, "20.00", T0 - 181 * DAY)
    book.add(other, "7000.00", T0, "deposit")
    assert analyse(since=T0 - 300 * DAY, until=T0 + DAY)["by_rule"] == {"dormant_reactivation": 1}
    assert book.alerts("dormant_reactivation")[1].evidence["gap_days"] == 181


# -- the same findings through a bank's own tables ------------------------------------------


def plant_one_of_each(book: Ledger) -> None:
    """One pattern per typology (and some rows that must not count)."""
    user = book.customer()
    first, second = book.account(user), book.account(user)
    cash(book, first, "6000.00", T0)
    cash(book, second, "4500.00", T0 + HOUR, kind="withdrawal")
    book.add(first, "4500.00", T0 + HOUR, "deposit", channel="ach")
    usual = book.account()
    history(book, usual, ["100.00"] * 12)
    book.add(usual, "7000.00", T0, "transfer", channel="wire")
    fan(book, book.account(), PARTIES[:7], kind="deposit", channel="ach")
    fan(book, book.account(), PARTIES[:6], channel="card")
    through = book.account()
    book.add(through, "9000.00", T0, "deposit", channel="wire")
    book.add(through, "8000.00", T0 + 5 * HOUR, "withdrawal", channel="cash")
    quiet = book.account()
    book.add(quiet, "50.00", T0 - 365 * DAY)
    book.add(quiet, "5500.00", T0 + HOUR, "payment", channel="ach", counterparty="Car dealer")


def alerts_of(app: Any) -> list[tuple[Any, ...]]:
    query = select(FraudAlert).where(FraudAlert.rule.in_(TYPOLOGIES)).order_by(FraudAlert.rule)
    with app.runtime.db.session() as session:
        return [
            (a.rule, a.account_id, a.transaction_id, a.severity, a.score, a.evidence, a.dedup_key)
            for a in session.scalars(query)
        ]


@pytest.mark.parametrize(
    "bank_db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_mapped_bank_schema_gives_the_same_findings(make_app, request, tmp_path: Path, bank_db):
    native_url = f"sqlite:///{tmp_path / 'native.db'}"
    enabled = {"fraud": {"enable_rules": ",".join(TYPOLOGIES)}}
    native = make_app("fraud", database_url=native_url, plugin_settings=enabled)
    plant_one_of_each(Ledger(native.runtime.db))
    analyse()
    expected = alerts_of(native)
    assert sorted({a[0] for a in expected}) == TYPOLOGIES
    assert len(expected) == len(TYPOLOGIES)  # one of each

    if bank_db == "sqlite":
        bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
        where = {"database_url": f"sqlite:///{tmp_path / 'own.db'}", "data_database_url": bank_url}
        mapping = BANK_MAPPING
    else:  # the bank's tables in `public`, banktasks' own in a schema of their own
        bank_url = request.getfixturevalue("pg_database_url")
        where = {"database_url": bank_url, "database_schema": "banktasks"}
        mapping = {**BANK_MAPPING, "schema": "public"}
    bank = create_engine(bank_url)
    create_bank_schema(bank)
    copy_from_native(create_engine(native_url), bank)
    bank.dispose()
    mapped = make_app(
        "fraud",
        data_mapping=mapping,
        banktasks_var_dir=str(tmp_path / "mapped-var"),
        plugin_settings=enabled,
        **where,
    )
    assert mapped.runtime.data.mapped
    analyse()
    assert alerts_of(mapped) == expected


# -- PostgreSQL -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_typology_boundaries_on_postgresql(make_app, pg_database_url):
    settings = {
        "business_timezone": "America/New_York",
        "deviation_min_amount": "0",
        "enable_rules": ",".join(TYPOLOGIES),
    }
    app = make_app("fraud", database_url=pg_database_url, plugin_settings={"fraud": settings})
    assert app.runtime.db.dialect == "postgresql"
    book = Ledger(app.runtime.db)
    expected: dict[str, list[int]] = {name: [] for name in TYPOLOGIES}

    for withdrawn, hit in (("4000.00", False), ("4000.01", True)):  # cash_threshold
        user = book.customer()
        one, two = book.account(user), book.account(user)
        cash(book, one, "6000.00", T0)
        crossing = cash(book, two, withdrawn, T0 + HOUR, kind="withdrawal")
        expected["cash_threshold"] += [crossing] if hit else []
    for amount, hit in (("500.00", False), ("500.01", True)):  # amount_deviation
        account = book.account()
        history(book, account, ["100.00"] * 9 + ["100.00"])
        tid = book.add(account, amount, T0)
        expected["amount_deviation"] += [tid] if hit else []
    for distinct in (5, 6):  # fan_in_out
        ids = fan(book, book.account(), PARTIES[:distinct], kind="transfer")
        expected["fan_in_out"] += ids[:1] if distinct == 6 else []
    for second, hit in (("2999.99", False), ("3000.00", True)):  # pass_through
        account = book.account()
        inbound = book.add(account, "10000.00", T0, "deposit")
        book.add(account, "5000.00", T0 + HOUR, "withdrawal")
        book.add(account, second, T0 + 48 * HOUR - US, "payment")
        expected["pass_through"] += [inbound] if hit else []
    for quiet, hit in ((180 * DAY - US, False), (180 * DAY, True)):  # dormant_reactivation
        account = book.account()
        book.add(account, "20.00", T0 - quiet)
        first = book.add(account, "5000.00", T0, "deposit")
        expected["dormant_reactivation"] += [first] if hit else []

    result = analyse(**around(T0, days=3))
    assert result["by_rule"] == {**result["by_rule"], **{k: len(v) for k, v in expected.items()}}
    for name, ids in expected.items():
        assert [a.transaction_id for a in book.alerts(name)] == ids, name

    # a 25-hour business day in New York, and the day after it
    account = book.account()
    cash(book, account, "6000.00", at("2024-11-03 04:00"))
    crossing = cash(book, account, "4500.00", at("2024-11-04 04:59:59.999999"))
    cash(book, account, "9000.00", at("2024-11-04 05:00"))
    cash(book, account, "1000.00", at("2024-11-05 04:59:59.999999"))
    assert analyse(**around(at("2024-11-04 00:00")))["by_rule"]["cash_threshold"] == 1
    (dst,) = [a for a in book.alerts("cash_threshold") if a.transaction_id == crossing]
    assert dst.evidence["business_day"] == "2024-11-03"
    assert dst.evidence["total"] == "10500.00"
