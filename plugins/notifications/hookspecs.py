"""Hooks the notifications plugin owns (marker `core.hookspec`)."""

from __future__ import annotations

from core import hookspec
from plugins.notifications.api import Channel


@hookspec
def register_notification_channels() -> list[Channel]:
    """Return notification channels: objects with `name` (str) and `send(message) -> None`.

    `EMAIL_BACKEND` names the channel that sends (built in: `smtp`, `file`,
    `console`); a name is lower-case letters, digits, `_` and `-`. `send` receives
    a `plugins.notifications.Message` (to, from_, subject, text, html, message_id,
    headers; `message.as_bytes()` gives the MIME e-mail). Return normally once the
    message is handed over; raise `plugins.notifications.TemporaryFailure` to have
    the task retried with backoff, anything else (e.g. `PermanentFailure`) to fail
    at once. A name registered by two plugins is a configuration error.
    """
    return []
