"""One end-to-end run through a real worker: the result round-trips the broker as JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.seed import seed

NOW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.mark.e2e
def test_analysis_through_a_real_worker(e2e):
    e2e.set(BANKTASKS_PLUGINS="fraud")
    app = e2e.app()
    summary = seed(app.runtime.db, users=40, transactions=1500, seed_value=11, now=NOW)
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
    }
    again = task.delay(since=since.isoformat(), until=NOW.isoformat()).get(timeout=60)
    assert again["alerts_created"] == 0
    assert again["by_rule"] == dict.fromkeys(result["by_rule"], 0)
