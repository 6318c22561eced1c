"""The plugin's tasks: `send_email_notification` (to a user) and `send_admin_email`."""

from __future__ import annotations

from typing import Any

from core import task
from plugins.notifications.sending import RETRY, check_one_key, deliver
from plugins.notifications.validation import Body, EventName, IdempotencyKey, Subject, UserId


def check_keys(**arguments: Any) -> None:
    """In the caller and in the worker: not both `idempotency_key` and `event`."""
    check_one_key(arguments.get("idempotency_key"), arguments.get("event"))


@task(
    queue="notifications",
    retry=RETRY,
    track_started=True,
    check=check_keys,
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
    event: EventName | None = None,
) -> dict[str, Any]:
    """E-mail a user through the EMAIL_BACKEND channel, at most once per idempotency key.

    `html_message` adds an HTML part (multipart/alternative). Without
    `idempotency_key` the key is derived from the Celery task id, so retries and
    redeliveries of this task send once. A caller's key never meets a key that
    banktasks uses itself (the outbox stores it as `caller:<key>`). `event` is set by
    this plugin's hooks only: such an e-mail is sent only if its hook reserved exactly
    this content. Returns `status` ("sent", "duplicate", or "superseded" for an event
    e-mail whose content is not the reserved one) and `message_id`. An unknown or
    inactive user, or one without an address, fails at once (outbox row `failed` with
    the reason); a server that is down or answers 4xx is retried with exponential
    backoff, 5 times at most.
    """
    return deliver(
        task_name=send_email_notification.name,
        kind="user",
        user_id=int(user_id),
        subject=subject,
        text=message,
        html=html_message,
        idempotency_key=idempotency_key,
        event=event,
    )


@task(
    queue="notifications",
    retry=RETRY,
    track_started=True,
    check=check_keys,
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
    event: EventName | None = None,
) -> dict[str, Any]:
    """E-mail ADMIN_EMAIL (daily report summaries, fraud alerts), at most once per key.

    Same channel, outbox, key namespaces, `event`, idempotency and retry behaviour as
    `send_email_notification`.
    """
    return deliver(
        task_name=send_admin_email.name,
        kind="admin",
        user_id=None,
        subject=subject,
        text=message,
        html=html_message,
        idempotency_key=idempotency_key,
        event=event,
    )
