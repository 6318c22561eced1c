"""End-of-day close: one UTC day's fraud analysis and statements, its daily report, a notice.

One Celery canvas built from the built-in tasks:

    group(fraud analysis of the day, one statement export per user)
      -> reports.generate_daily_reports(report_date=day)
      -> notifications.send_admin_email (or send_email_notification to a user)

Every step is an immutable signature (`.si()`): no built-in task takes the result
of the step before it (see docs/chains.md). The group followed by the report is a
chord: the report starts once the analysis and every export have finished, so the
alerts the analysis opens are in the report's fraud section. A step that fails
stops the steps after it: no notice goes out for a close that did not finish.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from celery import chain, group
from celery.canvas import Signature

from core.tasks import resolve


def end_of_day(
    day: date,
    statement_users: Iterable[int] = (),
    notify_user_id: int | None = None,
    app: Any = None,
) -> Signature:
    """The end-of-day close of UTC `day` as a Celery canvas; send it with `.apply_async()`.

    `statement_users`: users whose transactions of the day are exported, one file
    each. The notice goes to ADMIN_EMAIL, or to the user `notify_user_id`, once per
    day and recipient however often the close runs (idempotency key
    `end-of-day:<day>`, or `end-of-day:<day>:user:<id>`). `app`: the banktasks app
    whose tasks to use (default: the current app, else the default one).
    """
    start = datetime.combine(day, time.min, tzinfo=UTC)
    users = list(statement_users)
    analyse = resolve("fraud.analyze_fraud_patterns", app)
    export = resolve("export.export_transaction_data", app)
    report = resolve("reports.generate_daily_reports", app)

    subject = f"End of day {day.isoformat()} closed"
    message = (
        f"The end-of-day close of {day.isoformat()} (UTC) finished: fraud analysis of the "
        f"day, {len(users)} statement export(s) and the daily report."
    )
    key = f"end-of-day:{day.isoformat()}"
    if notify_user_id is None:
        notice = resolve("notifications.send_admin_email", app).si(
            subject=subject, message=message, idempotency_key=key
        )
    else:
        notice = resolve("notifications.send_email_notification", app).si(
            user_id=notify_user_id,
            subject=subject,
            message=message,
            idempotency_key=f"{key}:user:{notify_user_id}",
        )
    return chain(
        group(
            analyse.si(since=start, until=start + timedelta(days=1)),
            *(export.si(user_id=user, start_date=day, end_date=day) for user in users),
        ),
        report.si(report_date=day),
        notice,
    )
