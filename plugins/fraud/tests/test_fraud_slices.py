"""A window cut into time slices finds exactly the alerts of one analysis of the whole window,
each in exactly one slice, bursts straddling the cuts included (SQLite and PostgreSQL);
`analyze_fraud_patterns_chunked` and its chord callback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete

from banktasks_testing import seed_data
from core import TaskArgumentError
from plugins.fraud import FraudAlert, RuleContext, analyze_fraud_patterns_chunked
from plugins.fraud.models import FraudCase
from plugins.fraud.slices import MAX_CHUNKS, combine, split_window
from plugins.fraud.tasks import combine_fraud_slices

from .helpers import SEED_NOW, T0, Bank, analyse

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
SINCE, UNTIL = T0 - timedelta(days=2), T0 + timedelta(days=2)
CHUNKINGS = (2, 3, 4, 7)
CHUNKED = "fraud.analyze_fraud_patterns_chunked"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_bank(request, make_app) -> Bank:
    """A Bank on a fraud app, on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return Bank(make_app("fraud").runtime.db)
    url = request.getfixturevalue("pg_database_url")
    app = make_app("fraud", database_url=url)
    assert app.runtime.db.dialect == "postgresql"
    return Bank(app.runtime.db)


def stored(bank: Bank) -> list[tuple]:
    """Every stored alert without its id and creation time, sorted."""
    return sorted(
        (
            a.rule,
            a.dedup_key,
            a.account_id,
            a.transaction_id,
            a.severity,
            a.score,
            json.dumps(a.evidence, sort_keys=True),
        )
        for a in bank.alerts()
    )


def clear_alerts(bank: Bank) -> None:
    """Delete the alerts and the cases they opened (the next analysis opens them again)."""
    with bank.db.session() as session:
        session.execute(delete(FraudAlert))
        session.execute(delete(FraudCase))


def cuts(chunks: int) -> list[datetime]:
    """The inner boundaries of SINCE..UNTIL cut into `chunks` slices."""
    return [until for _, until in split_window(SINCE, UNTIL, chunks)[:-1]]


def plant_around(bank: Bank, cut: datetime) -> None:
    """Patterns at and across one slice boundary `cut`."""
    # velocity: the first window straddles the cut (starts 30 min before, 11 in it)
    bank.burst(bank.account(), cut - 30 * MINUTE, 11, 5 * MINUTE)
    # velocity: starts exactly at the cut, and 1 µs before it
    bank.burst(bank.account(), cut, 11, MINUTE)
    bank.burst(bank.account(), cut - US, 11, MINUTE)
    # velocity: one long burst from an hour before the cut to an hour after (one alert)
    bank.burst(bank.account(), cut - HOUR, 30, 4 * MINUTE)
    # velocity: a burst after the cut, within an hour of a quiet row before it
    quiet = bank.account()
    bank.tx(quiet, "1.00", cut - 50 * MINUTE)
    bank.burst(quiet, cut + 5 * MINUTE, 11, MINUTE)
    # not velocity: ten across the cut
    bank.burst(bank.account(), cut - 20 * MINUTE, 10, 4 * MINUTE)
    # structuring: two deposits 23 h apart across the cut, and three starting at the cut
    bank.txs(
        bank.account(), [("9500.00", cut - 12 * HOUR), ("9600.00", cut + 11 * HOUR)], "deposit"
    )
    bank.txs(bank.account(), [("9100.00", cut + h * HOUR) for h in (0, 1, 2)], "deposit")
    # large transactions 1 µs before the cut and at it
    bank.tx(bank.account(), "20000.00", cut - US, kind="transfer")
    bank.tx(bank.account(), "20000.00", cut, kind="transfer")


def plant_everywhere(bank: Bank) -> None:
    for cut in sorted({c for chunks in CHUNKINGS for c in cuts(chunks)}):
        plant_around(bank, cut)


def analyse_in_slices(chunks: int) -> list[dict]:
    return [analyse(since=a, until=b) for a, b in split_window(SINCE, UNTIL, chunks)]


# -- split_window -------------------------------------------------------------------------


def test_split_window_gives_contiguous_equal_slices():
    slices = split_window(SINCE, UNTIL, 3)
    assert slices == [
        (SINCE, SINCE + timedelta(hours=32)),
        (SINCE + timedelta(hours=32), SINCE + timedelta(hours=64)),
        (SINCE + timedelta(hours=64), UNTIL),
    ]
    assert split_window(SINCE, UNTIL, 1) == [(SINCE, UNTIL)]


def test_split_window_shares_out_the_odd_microseconds():
    slices = split_window(T0, T0 + 10 * US, 4)
    assert [b - a for a, b in slices] == [2 * US, 3 * US, 2 * US, 3 * US]
    assert slices[0][0] == T0 and slices[-1][1] == T0 + 10 * US
    assert all(slices[i][1] == slices[i + 1][0] for i in range(3))


@pytest.mark.parametrize("chunks", [0, -1, MAX_CHUNKS + 1])
def test_split_window_refuses_a_bad_number_of_chunks(chunks):
    with pytest.raises(ValueError, match=f"chunks={chunks}: give a number of slices from 1 to 64"):
        split_window(SINCE, UNTIL, chunks)


def test_split_window_refuses_a_window_shorter_than_its_slices():
    with pytest.raises(ValueError, match="longer than 4 microseconds"):
        split_window(T0, T0 + 3 * US, 4)


# -- slices find what one analysis finds ---------------------------------------------------


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_slices_find_exactly_the_alerts_of_one_analysis(any_bank, chunks):
    plant_everywhere(any_bank)
    whole = analyse(since=SINCE, until=UNTIL)
    expected = stored(any_bank)
    clear_alerts(any_bank)

    parts = analyse_in_slices(chunks)
    assert stored(any_bank) == expected
    # Each pattern is reported by exactly one slice: the slices' findings add up to the
    # whole's (a pattern seen by two slices would count twice), and so do the rows read.
    assert sum(p["findings"] for p in parts) == whole["findings"] == len(expected)
    assert sum(p["alerts_created"] for p in parts) == whole["alerts_created"]
    assert sum(p["scanned"] for p in parts) == whole["scanned"]
    assert combine(parts)["by_rule"] == whole["by_rule"]


def test_the_planted_boundary_patterns_are_all_found(bank):
    cut = T0  # the middle of SINCE..UNTIL: a cut of the 2- and 4-slice analyses
    plant_around(bank, cut)
    first, second = analyse(since=SINCE, until=cut), analyse(since=cut, until=UNTIL)
    assert first["by_rule"] == {"large_transaction": 1, "structuring": 1, "velocity": 3}
    assert second["by_rule"] == {"large_transaction": 1, "structuring": 1, "velocity": 2}
    (straddling,) = [
        a
        for a in bank.alerts("velocity")
        if a.evidence["first_at"] == (cut - 30 * MINUTE).isoformat()
    ]
    assert straddling.evidence["count"] == 11  # its first window, read past the cut
    assert straddling.evidence["last_at"] == (cut + 20 * MINUTE).isoformat()


def test_slices_of_seeded_data_find_the_alerts_of_one_analysis(any_bank):
    seed_data(any_bank.db, users=60, transactions=3000, seed_value=5, now=SEED_NOW)
    since = SEED_NOW - timedelta(days=31)
    whole = analyse(since=since, until=SEED_NOW)
    expected = stored(any_bank)
    assert whole["alerts_created"] > 0
    for chunks in (5, 13):
        clear_alerts(any_bank)
        parts = [analyse(since=a, until=b) for a, b in split_window(since, SEED_NOW, chunks)]
        assert stored(any_bank) == expected
        assert sum(p["findings"] for p in parts) == whole["findings"]


def test_an_explicit_window_reads_ahead_only_up_to_now(bank, monkeypatch):
    account = bank.account()
    bank.burst(account, T0 - 30 * MINUTE, 6, 5 * MINUTE)  # T0-30 .. T0-5
    bank.burst(account, T0 + 10 * MINUTE, 6, MINUTE)  # T0+10 .. T0+15: the burst's 7th-12th
    monkeypatch.setattr("plugins.fraud.engine.utcnow", lambda: T0 + 5 * MINUTE)
    assert analyse(since=T0 - HOUR, until=T0)["by_rule"]["velocity"] == 0  # later rows: not yet
    monkeypatch.setattr("plugins.fraud.engine.utcnow", lambda: T0 + HOUR)
    assert analyse(since=T0 - HOUR, until=T0)["by_rule"]["velocity"] == 1


def test_lookahead_until_us():
    def ctx(now):
        return RuleContext(None, T0, T0 + HOUR, None, now, fraud_settings=None)  # type: ignore[arg-type]

    hour_us = 3_600_000_000
    until_us = ctx(None).until_us
    assert ctx(None).lookahead_until_us(hour_us) == until_us + hour_us
    assert ctx(T0 + 3 * HOUR).lookahead_until_us(hour_us) == until_us + hour_us
    assert ctx(T0 + 90 * MINUTE).lookahead_until_us(hour_us) == until_us + hour_us // 2
    assert ctx(T0).lookahead_until_us(hour_us) == until_us  # never before until


# -- analyze_fraud_patterns_chunked -------------------------------------------------------


def test_chunked_task_in_process_equals_one_analysis(bank):
    plant_everywhere(bank)
    whole = analyse(since=SINCE, until=UNTIL)
    expected = stored(bank)
    clear_alerts(bank)
    result = analyze_fraud_patterns_chunked(since=SINCE, until=UNTIL, chunks=4)
    assert result == {**whole, "chunks": 4}
    assert stored(bank) == expected
    again = analyze_fraud_patterns_chunked(since=SINCE.isoformat(), until=UNTIL, chunks=3)
    assert again["alerts_created"] == 0 and again["findings"] == whole["findings"]


def test_chunked_task_through_celery_eagerly(bank, fraud_app):
    plant_around(bank, T0)
    whole = analyse(since=SINCE, until=UNTIL)
    expected = stored(bank)
    clear_alerts(bank)
    outcome = fraud_app.tasks[CHUNKED].apply(
        kwargs={"since": SINCE.isoformat(), "until": UNTIL.isoformat(), "chunks": 2}
    )
    assert outcome.successful(), outcome.traceback
    assert outcome.result == {**whole, "chunks": 2}
    assert stored(bank) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"since": T0, "until": T0 + HOUR, "chunks": 0}, "chunks=0: give a number of slices"),
        ({"since": T0, "until": T0 + HOUR, "chunks": 65}, "from 1 to 64"),
        ({"since": T0, "until": T0}, f"{CHUNKED}: since=.* must be before until="),
        ({"since": T0 + HOUR, "until": T0}, "must be before"),
        ({"since": T0, "until": T0 + 3 * US}, "longer than 4 microseconds"),
        ({"until": T0}, "missing a required argument: 'since'"),
        ({"since": T0}, "missing a required argument: 'until'"),
        ({"since": T0, "until": T0 + HOUR, "chunks": "many"}, "argument 'chunks'"),
        ({"since": "0001-01-01T00:00:00+14:00", "until": T0}, "out of range"),
    ],
)
def test_chunked_task_refuses_bad_arguments_before_sending(fraud_app, kwargs, message):
    with pytest.raises(TaskArgumentError, match=message):
        fraud_app.tasks[CHUNKED].delay(**kwargs)
    with pytest.raises(TaskArgumentError, match=message):
        analyze_fraud_patterns_chunked(**kwargs)


def test_chunked_task_options(fraud_app):
    celery_task = fraud_app.tasks[CHUNKED]
    assert celery_task.route_queue == "fraud"
    assert celery_task.max_retries == 3
    assert celery_task.acks_late is True
    assert celery_task.track_started is True  # STARTED while the slices run
    callback = fraud_app.tasks["fraud.combine_fraud_slices"]
    assert callback.route_queue == "fraud"


def slice_result(since: datetime, until: datetime, **by_rule: int) -> dict:
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "from_watermark": False,
        "scanned": 10,
        "findings": sum(by_rule.values()) + 1,
        "alerts_created": sum(by_rule.values()),
        "by_rule": by_rule,
        "emitted": 1,
        "notify_failed": 0,
        "suppressed": 1,
        "suppressed_by_rule": {"velocity": 1},
        "cases_opened": 2,
        "case_notify_failed": 1,
    }


def test_combine_adds_the_slices_up(fraud_app):
    later = T0 + HOUR
    parts = [
        slice_result(later, later + HOUR, velocity=1, structuring=0),
        slice_result(T0, later, velocity=2, large_transaction=3),
    ]
    assert combine_fraud_slices(results=parts) == {
        "since": T0.isoformat(),
        "until": (later + HOUR).isoformat(),
        "from_watermark": False,
        "scanned": 20,
        "findings": 8,
        "alerts_created": 6,
        "by_rule": {"large_transaction": 3, "structuring": 0, "velocity": 3},
        "emitted": 2,
        "notify_failed": 0,
        "suppressed": 2,
        "suppressed_by_rule": {"velocity": 2},
        "cases_opened": 4,
        "case_notify_failed": 2,
        "chunks": 2,
    }


def test_combine_takes_naive_bounds_as_utc_and_converts_offsets(fraud_app):
    """Found by the property test in tests/security: mixed naive and aware bounds."""
    aware = slice_result(T0, T0 + HOUR)
    naive = {**slice_result(T0 + HOUR, T0 + 2 * HOUR), "since": (T0 + HOUR).replace(tzinfo=None)}
    plus_two = timezone(timedelta(hours=2))
    shifted = {**naive, "since": (T0 + HOUR).astimezone(plus_two).isoformat()}
    for second in (naive, shifted):
        combined = combine_fraud_slices(results=[aware, second])
        assert combined["since"] == T0.isoformat()
        assert combined["until"] == (T0 + 2 * HOUR).isoformat()


@pytest.mark.parametrize(
    "results",
    [[], [{"since": "x"}], [slice_result(T0, T0 + HOUR)] * (MAX_CHUNKS + 1)],
    ids=["empty", "not-a-result", "too-many"],
)
def test_combine_refuses_what_is_not_slice_results(fraud_app, results):
    with pytest.raises(TaskArgumentError, match="results"):
        combine_fraud_slices(results=results)


def test_naive_bounds_are_taken_as_utc(bank):
    naive = datetime(2024, 5, 1, 0, 0)
    result = analyze_fraud_patterns_chunked(since=naive, until=naive + HOUR, chunks=2)
    assert result["since"] == naive.replace(tzinfo=UTC).isoformat()
    assert result["chunks"] == 2
