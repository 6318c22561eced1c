"""End to end: a real worker process, the real broker and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from banktasks_testing import SMTPRecorder, seed_data, wait_for
from plugins.notifications.tests.helpers import outbox_rows

pytestmark = pytest.mark.e2e

SEED_KWARGS = {
    "user_id": 1,
    "subject": "Account Update",
    "message": "Your account has been updated successfully.",
}


def smtp_env(e2e: Any, server: SMTPRecorder, **extra: str) -> Any:
    e2e.set(
        BANKTASKS_PLUGINS="notifications",
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(server.port),
        **extra,
    )
    app = e2e.app()
    seed_data(app.runtime.db, users=3, transactions=0)
    return app


def test_seed_example_is_delivered_exactly_once(e2e: Any, smtp_server: SMTPRecorder) -> None:
    app = smtp_env(e2e, smtp_server)
    worker = e2e.start_worker()

    from core.tasks import send_email_notification

    result = send_email_notification.delay(
        user_id=1,
        subject="Account Update",
        message="Your account has been updated successfully.",
    )
    value = result.get(timeout=60)
    assert value["status"] == "sent"
    assert value["idempotency_key"] == f"task:{result.id}"
    (msg,) = smtp_server.messages
    assert (msg["From"], msg["To"], msg["Subject"]) == (
        "noreply@banking.com",
        "user1@example.com",
        "Account Update",
    )
    assert msg["Message-ID"] == value["message_id"]
    assert msg.get_payload(decode=True).decode().strip() == SEED_KWARGS["message"]

    # The broker delivers the same task again (same id): the outbox turns it into a duplicate.
    send_email_notification.apply_async(kwargs=SEED_KWARGS, task_id=result.id)
    wait_for(lambda: "notification_duplicate" in worker.log(), 30, what="the redelivery")
    assert len(smtp_server.messages) == 1
    (row,) = outbox_rows(app)
    assert (row.status, row.attempts, row.recipient) == ("sent", 1, "user1@example.com")
    assert "user1@example.com" not in worker.log(), "addresses are never logged"


def test_smtp_down_then_back_retries_with_backoff_and_sends_once(
    e2e: Any, smtp_server: SMTPRecorder
) -> None:
    app = smtp_env(e2e, smtp_server, NOTIFICATIONS_RETRY_BACKOFF="1")
    smtp_server.stop()
    worker = e2e.start_worker()

    from core.tasks import send_email_notification

    result = send_email_notification.delay(**SEED_KWARGS)

    def retried() -> bool:
        rows = outbox_rows(app)
        return bool(rows) and rows[0].attempts >= 2 and rows[0].status == "pending"

    wait_for(retried, 30, what="a second attempt while the server is down")
    (row,) = outbox_rows(app)
    assert "ConnectionRefusedError" in row.error
    smtp_server.start()

    value = result.get(timeout=60)
    assert value["status"] == "sent" and value["attempts"] >= 2
    assert len(smtp_server.messages) == 1
    (row,) = outbox_rows(app)
    assert (row.status, row.attempts, row.error) == ("sent", value["attempts"], None)
    # Celery's own retry lines show the small backoff in use (1 * 2**retries, jittered).
    waits = [int(s) for s in re.findall(r"Retry in (\d+)s", worker.log())]
    assert len(waits) == value["attempts"] - 1
    assert all(w <= 1 * 2**i for i, w in enumerate(waits)), waits
