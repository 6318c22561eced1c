"""What reports contributes to hooks other plugins own: its lateness, for metrics.

The metrics default plugin's `collect_metrics(ctx)` (called when Prometheus scrapes
the endpoint): `banktasks_reports_lateness_seconds`. When metrics is disabled this
is never called. No other plugin is imported; samples are plain dicts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from core import hookimpl
from plugins.reports.models import StoredReport
from plugins.reports.tasks import TASK


def report_due(schedule: Any, day: date) -> datetime:
    """When the report of `day` is due: the first run of its beat entry's schedule at or
    after the end of that day (UTC; Celery's own schedule arithmetic)."""
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    now = datetime.now(UTC)
    return now + schedule.remaining_estimate(end - timedelta(minutes=1))  # type: ignore[no-any-return]


def lateness(session: Any, schedule: Any, now: datetime) -> float:
    """Seconds since yesterday's (UTC) report was due and not stored; 0 when it is stored
    or not due yet."""
    day = now.astimezone(UTC).date() - timedelta(days=1)
    stored = session.scalar(select(StoredReport.id).where(StoredReport.report_date == day))
    if stored is not None:
        return 0.0
    return max(0.0, (now - report_due(schedule, day)).total_seconds())


@hookimpl
def collect_metrics(ctx: Any) -> list[dict[str, Any]]:
    """Metrics' hook (at scrape time): `lateness_seconds`, how late yesterday's report is.

    Nothing when no beat entry runs the report task (REPORTS_SCHEDULE=off).
    """
    entries = [
        conf for conf in (ctx.app.conf.beat_schedule or {}).values() if conf.get("task") == TASK
    ]
    if not entries:
        return []
    with ctx.db.session() as session:
        late = lateness(session, entries[0]["schedule"], ctx.now)
    return [
        {
            "name": "lateness_seconds",
            "help": "Seconds since yesterday's (UTC) daily report was due and not stored; "
            "0 when stored",
            "value": late,
        }
    ]
