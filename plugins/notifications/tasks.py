"""The plugin's tasks: `send_email_notification` (to a user) and `send_admin_email`."""

from __future__ import annotations

from typing import Any

from core import task
from plugins.notifications.sending import RETRY, deliver
from plugins.notifications.validation import Body, IdempotencyKey, Subject, UserId


@task(
    queue="notifications",
    retry=RETRY,
    track_started=True,
    example={
        "user_id": 1,
        "subject": "Account Update",
        "message": "Your account has been updated successfully.",
    },
)
def send_email_notification(
    user_id: UserId,
    subject: Subject,
    message: Body,
    html_message: Body | None = None,
    idempotency_key: IdempotencyKey | None = None,
) -> dict[str, Any]:
    """E-mail a user through the EMAIL_BACKEND channel, at most once per idempotency key.

    `html_message` adds an HTML part (multipart/alternative). Without
    `idempotency_key` the key is derived from the Celery task id, so retries and
    redeliveries of this task send once. Returns `status` ("sent" or "duplicate")
    and `message_id`. An unknown or inactive user, or one without an address,
    fails at once (outbox row `failed` with the reason); a server that is down or
    answers 4xx is retried with exponential backoff, 5 times at most.
    """
    return deliver(
        task_name=send_email_notification.name,
        kind="user",
        user_id=int(user_id),
        subject=subject,
        text=message,
        html=html_message,
        idempotency_key=idempotency_key,
    )


@task(
    queue="notifications",
    retry=RETRY,
    track_started=True,
    example={
        "subject": "banktasks demo",
        "message": "The demo sent every plugin's task through the queue.",
    },
)
def send_admin_email(
    subject: Subject,
    message: Body,
    html_message: Body | None = None,
    idempotency_key: IdempotencyKey | None = None,
) -> dict[str, Any]:
    """E-mail ADMIN_EMAIL (daily report summaries, fraud alerts), at most once per key.

    Same channel, outbox, idempotency and retry behaviour as `send_email_notification`.
    """
    return deliver(
        task_name=send_admin_email.name,
        kind="admin",
        user_id=None,
        subject=subject,
        text=message,
        html=html_message,
        idempotency_key=idempotency_key,
    )
