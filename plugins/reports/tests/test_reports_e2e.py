"""End to end: the seed's verbatim call through a real worker over the real broker."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from banktasks_testing import seed_data, send_unchecked
from core import TaskArgumentError
from core.db import utcnow
from core.models import Transaction
from plugins.reports.sections import day_window

from .helpers import stored_rows


@pytest.mark.e2e
def test_seed_call_through_a_real_worker(e2e: Any) -> None:
    e2e.set(BANKTASKS_PLUGINS="reports")
    app = e2e.app()
    installed = app.runtime.plugins.entry_points
    assert [name for name in installed if app.runtime.is_enabled(name)] == ["reports"]
    seed_data(app.runtime.db, users=20, transactions=600, seed_value=3, now=utcnow())
    yesterday = (utcnow() - timedelta(days=1)).date()
    start, end = day_window(yesterday)
    with app.runtime.db.session() as session:
        expected_count, expected_sum = session.execute(
            select(func.count(Transaction.id), func.sum(Transaction.amount)).where(
                Transaction.created_at >= start, Transaction.created_at < end
            )
        ).one()
    assert expected_count > 0
    worker = e2e.start_worker()

    from core.tasks import generate_daily_reports

    result = generate_daily_reports.delay()
    summary = result.get(timeout=60)

    assert summary["report_date"] == yesterday.isoformat()
    assert summary["emailed"] is False
    assert summary["totals"] == {
        "transactions": expected_count,
        "sums": {"USD": str(expected_sum)},
    }
    assert set(summary["files"]) == {"json", "csv", "html"}
    report = json.loads(Path(summary["files"]["json"]).read_text())
    assert report["sections"]["transactions"]["count"] == expected_count

    # A day in the future is refused by the caller (nothing is queued) and, when a message
    # bypasses the caller, by the worker: a failure, once, that writes nothing.
    future = (utcnow() + timedelta(days=2)).date()
    with pytest.raises(TaskArgumentError, match="is in the future"):
        generate_daily_reports.delay(report_date=future)
    failing = send_unchecked(
        app, "reports.generate_daily_reports", kwargs={"report_date": future.isoformat()}
    )
    with pytest.raises(Exception, match="is in the future") as raised:
        failing.get(timeout=60)
    assert type(raised.value).__name__ == "TaskArgumentError"
    assert failing.state == "FAILURE"
    assert "Retry in" not in worker.log(), "a refusal is never retried"
    folder = Path(summary["files"]["json"]).parent
    assert sorted(p.name for p in folder.iterdir()) == [
        f"daily-report-{yesterday.isoformat()}.{ext}" for ext in ("csv", "html", "json")
    ]
    assert [r.report_date for r in stored_rows(app)] == [yesterday]
