"""End-to-end runs through a real worker: the result round-trips the broker as JSON, and the
chunked analysis runs its slices as a chord."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete

from banktasks_testing import seed_data
from plugins.fraud import FraudAlert
from plugins.fraud.models import FraudCase
from plugins.fraud.slices import split_window

from .helpers import Bank

NOW = datetime(2024, 6, 1, tzinfo=UTC)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


@pytest.mark.e2e
def test_analysis_through_a_real_worker(e2e):
    e2e.set(BANKTASKS_PLUGINS="fraud")
    app = e2e.app()
    summary = seed_data(app.runtime.db, users=40, transactions=1500, seed_value=11, now=NOW)
    e2e.start_worker()
    task = app.tasks["fraud.analyze_fraud_patterns"]
    since = NOW - timedelta(days=31)
    result = task.delay(since=since, until=NOW.isoformat()).get(timeout=60)
    assert result == {
        "since": since.isoformat(),
        "until": NOW.isoformat(),
        "from_watermark": False,
        "scanned": summary.transactions,
        "findings": result["alerts_created"],
        "alerts_created": len(summary.large_transactions)
        + len(summary.structuring_accounts)
        + len(summary.velocity_accounts),
        "by_rule": {
            "large_transaction": len(summary.large_transactions),
            "structuring": len(summary.structuring_accounts),
            "velocity": len(summary.velocity_accounts),
        },
        "emitted": result["emitted"],
        "notify_failed": 0,
        "suppressed": 0,
        "suppressed_by_rule": {},
        "cases_opened": result["cases_opened"],
        "case_notify_failed": 0,
    }
    assert 0 < result["cases_opened"] <= result["alerts_created"]  # one per customer
    again = task.delay(since=since.isoformat(), until=NOW.isoformat()).get(timeout=60)
    assert again["alerts_created"] == 0
    assert again["by_rule"] == dict.fromkeys(result["by_rule"], 0)


@pytest.mark.e2e
def test_chunked_analysis_through_two_worker_processes(e2e):
    """The chunked task sends its slices and the callback through the queue (a chord); two
    pool processes run them, and the alerts are those of one analysis of the window."""
    e2e.set(BANKTASKS_PLUGINS="fraud")
    app = e2e.app()
    seed_data(app.runtime.db, users=40, transactions=1500, seed_value=11, now=NOW)
    bank = Bank(app.runtime.db)
    since = NOW - timedelta(days=31)
    for _, cut in split_window(since, NOW, 4)[:-1]:  # bursts straddling each slice boundary
        bank.burst(bank.account(), cut - 30 * MINUTE, 11, 5 * MINUTE)
        bank.txs(bank.account(), [("9500.00", cut - HOUR), ("9600.00", cut + HOUR)], "deposit")
    worker = e2e.start_worker(concurrency=2, queues=["fraud"])
    window = {"since": since.isoformat(), "until": NOW.isoformat()}

    single = app.tasks["fraud.analyze_fraud_patterns"].delay(**window).get(timeout=60)
    expected = alert_keys(bank)
    assert len(expected) == single["alerts_created"] > 6
    with app.runtime.db.session() as session:
        session.execute(delete(FraudAlert))
        session.execute(delete(FraudCase))  # the chunked run opens them again

    chunked = app.tasks["fraud.analyze_fraud_patterns_chunked"].delay(**window, chunks=4)
    assert chunked.get(timeout=120) == {**single, "chunks": 4}
    assert alert_keys(bank) == expected
    log = worker.log()
    assert log.count("Task fraud.analyze_fraud_patterns[") >= 1 + 4  # the single task + 4 slices
    assert "Task fraud.combine_fraud_slices[" in log
    again = app.tasks["fraud.analyze_fraud_patterns_chunked"].delay(**window, chunks=3)
    assert again.get(timeout=120)["alerts_created"] == 0


def alert_keys(bank: Bank) -> list[tuple[str, str]]:
    """(rule, dedup_key) of every stored alert, sorted."""
    return sorted((a.rule, a.dedup_key) for a in bank.alerts())
