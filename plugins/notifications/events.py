"""Event e-mails: the ones this plugin's hooks send (a new fraud case, the daily report, an
export that is ready), keyed `event:<name>:<id>` in the outbox.

`queue_event_email()` runs in the process that runs the hook. It first reserves the
event's outbox row with the Message-ID of exactly this content, then queues the task
with `event=<name>:<id>`. The worker sends only a reserved event with that content, so
no caller, not even one that writes raw messages to the broker, can mark an event's
key as sent beforehand or have other content sent under it.
"""

from __future__ import annotations

from typing import Any

from core import current
from plugins.notifications import outbox
from plugins.notifications.tasks import send_admin_email, send_email_notification


def queue_event_email(
    event: str, *, subject: str, text: str, html: str | None, user_id: int | None = None
) -> Any:
    """Reserve and queue the e-mail about `event` (to ADMIN_EMAIL when `user_id` is None);
    return the AsyncResult. Queued again, the same content is a duplicate once sent."""
    kind = "admin" if user_id is None else "user"
    key = outbox.event_key(event)
    digest = outbox.content_digest(
        kind=kind, user_id=user_id, subject=subject, text=text, html=html
    )
    message_id = outbox.event_message_id(key, digest)
    outbox.reserve(
        current().db, key, kind=kind, user_id=user_id, subject=subject, message_id=message_id
    )
    kwargs: dict[str, Any] = {"subject": subject, "message": text, "event": event}
    if html is not None:
        kwargs["html_message"] = html
    if user_id is None:
        return send_admin_email.delay(**kwargs)
    return send_email_notification.delay(user_id=user_id, **kwargs)
