"""Finding 2: a caller's idempotency key can never silence an e-mail that banktasks itself
sends (a new fraud case, the daily report, "your export is ready") nor one whose key is
derived from a task id.

A caller first sends e-mails with every key pattern banktasks uses on its own
(`fraud-case:<id>`, `daily-report:<date>`, `export-ready:<id>`, `task:<id>`, and the
`fraud-alert:<id>` of the e-mail per alert there was before cases) through a real
worker; then the events happen for real. Every one of their e-mails must reach the SMTP
server: a caller's keys live in their own namespace (`caller:<key>`), apart from the keys of
the hooks (`event:<name>`, which only a hook in a banktasks process can reserve) and the keys
derived from task ids (`task:<id>`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from banktasks_testing import SMTPRecorder, make_account, make_transaction, make_user, wait_for
from core.db import utcnow

pytestmark = pytest.mark.e2e

ADMIN = "notifications.send_admin_email"
NOTIFY = "notifications.send_email_notification"
PLANNED_TASK_ID = "planned-0001"
CASE_OPENED = "[fraud] case #1 opened: high large_transaction"
"""The one admin e-mail about the customer's case (opened by its first alert)."""


def subjects(server: SMTPRecorder) -> list[str]:
    return [str(m["Subject"]) for m in server.messages]


def test_caller_keys_cannot_silence_internal_emails(e2e: Any, smtp_server: SMTPRecorder) -> None:
    e2e.set(
        BANKTASKS_PLUGINS="fraud,reports,export,notifications",
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_server.port),
    )
    app = e2e.app()
    with app.runtime.db.session() as session:
        user = make_user(session, email="victim@example.com")
        make_transaction(session, make_account(session, user), amount="25000.00")  # a case
        user_id = user.id
    e2e.start_worker(concurrency=2)
    today = utcnow().date()

    # The caller squats every key pattern banktasks uses itself, before the events happen.
    squatted = [f"fraud-{kind}:{n}" for kind in ("case", "alert") for n in (1, 2, 3)]
    squatted += [f"daily-report:{today.isoformat()}", f"task:{PLANNED_TASK_ID}"]
    squats = [
        app.tasks[ADMIN].delay(subject="nothing to see", message="x", idempotency_key=key)
        for key in squatted
    ]
    squats.append(
        app.tasks[NOTIFY].delay(
            user_id=user_id, subject="nothing to see", message="x", idempotency_key="export-ready:1"
        )
    )
    assert [r.get(timeout=60)["status"] for r in squats] == ["sent"] * len(squats)
    assert len(smtp_server.messages) == len(squats)

    # Now the events: a fraud case, the day's report, an export; and a plain e-mail whose
    # key is derived from its task id (the one the caller squatted as `task:<id>`).
    fraud = app.tasks["fraud.analyze_fraud_patterns"].delay().get(timeout=60)
    assert fraud["alerts_created"] >= 1, fraud
    app.tasks["reports.generate_daily_reports"].delay(report_date=today).get(timeout=60)
    app.tasks["export.export_transaction_data"].delay(
        user_id=user_id, start_date=today - timedelta(days=1), end_date=today
    ).get(timeout=60)
    derived = (
        app.tasks[ADMIN]
        .apply_async(kwargs={"subject": "planned", "message": "x"}, task_id=PLANNED_TASK_ID)
        .get(timeout=60)
    )

    expected = {
        CASE_OPENED,
        f"Daily report {today.isoformat()}",
        "Your transaction export is ready",
        "planned",
    }
    wait_for(lambda: expected <= set(subjects(smtp_server)), 30, "every internal e-mail")
    assert derived["status"] == "sent", derived
    (ready,) = [
        m for m in smtp_server.messages if m["Subject"] == "Your transaction export is ready"
    ]
    assert ready["To"] == "victim@example.com"
    assert [t for t in subjects(smtp_server) if t.startswith("[fraud]")] == [CASE_OPENED]
