"""One delivery attempt: claim the key, find the recipient, send, record — and retry.

Both tasks call `deliver()`. A `TemporaryFailure` inside a worker schedules a
retry (exponential backoff from NOTIFICATIONS_RETRY_BACKOFF, 5 retries at most);
on the last try, or on any other error, the outbox row is marked `failed` with
the reason and the task fails.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta
from typing import Any, NoReturn

from sqlalchemy import select

from core import RetryPolicy, TaskArgumentError, current, data_scope, get_logger
from plugins.notifications import outbox
from plugins.notifications.api import Message, PermanentFailure, TemporaryFailure
from plugins.notifications.channels import PLUGIN, get_channel
from plugins.notifications.settings import NotificationsSettings
from plugins.notifications.validation import check_address

log = get_logger(__name__)

MAX_RETRIES = 5
RETRY = RetryPolicy(
    max_retries=MAX_RETRIES, backoff=30, backoff_max=900, jitter=True, retry_on=(TemporaryFailure,)
)
"""The policy the tasks declare; the countdowns actually used come from `retry_policy()`."""

AUTO_HEADERS = {"Auto-Submitted": "auto-generated"}


def retry_policy(settings: NotificationsSettings) -> RetryPolicy:
    """RETRY with the backoff of NOTIFICATIONS_RETRY_BACKOFF / NOTIFICATIONS_RETRY_BACKOFF_MAX."""
    return replace(RETRY, backoff=settings.retry_backoff, backoff_max=settings.retry_backoff_max)


def lease_for(settings: NotificationsSettings) -> timedelta:
    """How long one attempt may hold its key: a full SMTP dialogue at SMTP_TIMEOUT per step."""
    return timedelta(seconds=60 + 10 * settings.smtp_timeout)


def running_task(task_name: str | None) -> Any:
    """The Celery task being executed, if it is `task_name` (not some outer task)."""
    from celery import current_task

    task = current_task._get_current_object() if current_task else None
    if task is None or task_name is None or task.name != task_name:
        return None
    if task.request.called_directly or not task.request.id:
        return None
    return task


def check_one_key(idempotency_key: str | None = None, event: str | None = None) -> None:
    """`idempotency_key` (a caller's) and `event` (a hook's) exclude each other."""
    if idempotency_key is not None and event is not None:
        raise TaskArgumentError(
            "give idempotency_key or event, not both (event is for this plugin's hooks)"
        )


def stored_key(
    task_name: str | None,
    task: Any,
    content: dict[str, Any],
    idempotency_key: str | None,
    event: str | None,
) -> tuple[str, str | None]:
    """(the outbox key, the Message-ID an event's row must carry, else None).

    `event:<event>` with the Message-ID of exactly this content; `caller:<key>` for a
    caller's key; else derived from the task id (or the arguments outside a worker).
    """
    if event is not None:
        key = outbox.event_key(event)
        return key, outbox.event_message_id(key, outbox.content_digest(**content))
    if idempotency_key is not None:
        return outbox.caller_key(idempotency_key), None
    task_id = task.request.id if task is not None else None
    return outbox.derive_key(task_name or content["kind"], task_id, content), None


def refuse_unknown_user(user_id: int) -> None:
    """An id that names no user is a bad argument: TaskArgumentError (never retried), and
    the outbox is not touched."""
    if _user(user_id) is None:
        raise TaskArgumentError(f"user_id={user_id}: no such user; nothing was sent")


def _user(user_id: int) -> Any:
    """(email, is_active) of a user, or None; read where the users are (`current().data`)."""
    users = current().data.users
    with data_scope() as session:
        query = select(users.c.email, users.c.is_active).where(users.c.id == user_id)
        return session.execute(query).first()


def user_address(user_id: int) -> str:
    """The address of an active user, or PermanentFailure saying why there is none."""
    user = _user(user_id)
    if user is None:
        raise PermanentFailure(f"user {user_id} does not exist; nothing was sent")
    if not user.is_active:
        raise PermanentFailure(f"user {user_id} is inactive; nothing was sent")
    address = (user.email or "").strip()
    if not address:
        raise PermanentFailure(f"user {user_id} has no e-mail address; nothing was sent")
    try:
        check_address(address)
    except ValueError:
        raise PermanentFailure(
            f"user {user_id} has an invalid e-mail address; nothing was sent"
        ) from None
    return address


def deliver(
    *,
    task_name: str | None,
    kind: str,
    user_id: int | None,
    subject: str,
    text: str,
    html: str | None,
    idempotency_key: str | None,
    event: str | None = None,
) -> dict[str, Any]:
    """Send one message at most once per idempotency key; return status and message_id.

    The key is stored in its namespace (see `outbox`): `caller:<idempotency_key>`,
    `event:<event>` (only if a hook reserved exactly this content), else derived from
    the task id. The result's `idempotency_key` is the caller's key as given, or the
    stored key when the caller gave none.
    """
    runtime = current()
    settings: NotificationsSettings = runtime.settings_for(PLUGIN)
    db = runtime.db
    task = running_task(task_name)
    check_one_key(idempotency_key, event)
    if user_id is not None:
        refuse_unknown_user(user_id)
    content = {"kind": kind, "user_id": user_id, "subject": subject, "text": text, "html": html}
    key, expect = stored_key(task_name, task, content, idempotency_key, event)
    shown = idempotency_key if idempotency_key is not None else key
    claim = outbox.claim(
        db,
        key,
        kind=kind,
        user_id=user_id,
        subject=subject,
        lease=lease_for(settings),
        expect=expect,
    )
    if claim.outcome == "unreserved":
        raise TaskArgumentError(
            f"event={event!r}: no banktasks hook announced this e-mail (an event e-mail is "
            "only sent after its hook reserved it); nothing was sent"
        )
    if claim.outcome == "superseded":
        # Not the content the hook reserved: a newer announcement of the same event (or a
        # forged message). The reserved content is sent by its own task.
        log.warning("notification_superseded", key=key, message_id=expect)
        return {"status": "superseded", "message_id": expect, "idempotency_key": shown}
    if claim.outcome == "sent":
        log.info("notification_duplicate", key=key, message_id=claim.message_id)
        return {
            "status": "duplicate",
            "message_id": claim.message_id,
            "idempotency_key": shown,
            "sent_at": claim.sent_at.isoformat() if claim.sent_at else None,
        }
    if claim.outcome == "busy":
        # Another delivery of this key holds the lease: come back when it has expired.
        busy = TemporaryFailure(
            f"another worker is sending {key!r} right now", retry_after=claim.retry_after
        )
        _retry_or_raise(task, busy, settings)

    recipient: str | None = None
    channel_name: str | None = None
    try:
        recipient = user_address(user_id) if user_id is not None else settings.admin_email
        channel = get_channel(runtime=runtime)
        channel_name = channel.name
        message = Message(
            to=recipient,
            from_=settings.default_from_email,
            subject=subject,
            text=text,
            html=html,
            message_id=claim.message_id,
            headers=dict(AUTO_HEADERS),
        )
        channel.send(message)
    except TemporaryFailure as exc:
        final = task is not None and task.request.retries >= task.max_retries
        reason = outbox.describe(exc)
        if final:
            reason = f"gave up after {claim.attempts} attempts: {reason}"
        outbox.mark_failed(db, key, reason, final=final, recipient=recipient, channel=channel_name)
        log.warning(
            "notification_temporary_failure",
            key=key,
            attempt=claim.attempts,
            final=final,
            error=reason,
        )
        _retry_or_raise(task, exc, settings)
    except Exception as exc:
        reason = outbox.describe(exc)
        outbox.mark_failed(db, key, reason, final=True, recipient=recipient, channel=channel_name)
        log.error("notification_failed", key=key, attempt=claim.attempts, error=reason)
        raise
    assert recipient is not None  # set before the message was built
    outbox.mark_sent(
        db, key, recipient=recipient, channel=channel.name, message_id=claim.message_id
    )
    log.info(
        "notification_sent",
        key=key,
        message_id=claim.message_id,
        channel=channel.name,
        user_id=user_id,
        attempt=claim.attempts,
    )
    return {
        "status": "sent",
        "message_id": claim.message_id,
        "idempotency_key": shown,
        "channel": channel.name,
        "attempts": claim.attempts,
    }


def _retry_or_raise(task: Any, exc: TemporaryFailure, settings: NotificationsSettings) -> NoReturn:
    """Schedule the next try of `task` (if it has tries left), else re-raise `exc`."""
    if task is None or task.request.retries >= task.max_retries:
        raise exc
    policy = retry_policy(settings)
    countdown = policy.countdown(task.request.retries)
    if exc.retry_after:
        countdown = max(countdown, min(math.ceil(exc.retry_after), policy.backoff_max))
    raise task.retry(exc=exc, countdown=countdown)
