"""notifications: e-mail users and admins through pluggable channels, exactly once per key.

Public surface for other plugins and third-party channel packages:

- `Channel`, `Message`, `TemporaryFailure`, `PermanentFailure`, `NotificationError`
  (defined in `plugins.notifications.api`): what a channel implements, receives and raises;
- `SMTPChannel`, `FileChannel`, `ConsoleChannel` (the built-in channels) and `get_channel`;
- `NotificationsSettings`, the outbox table `OutboxEntry` / `OutboxStatus` and
  `message_id_for(key)`;
- the tasks `send_email_notification` and `send_admin_email`;
- the hookspec `register_notification_channels()` in `plugins.notifications.hookspecs`.

The hook implementations live in `plugins.notifications.plugin` (the entry point).
"""

from __future__ import annotations

from plugins.notifications.api import (
    Channel,
    Message,
    NotificationError,
    PermanentFailure,
    TemporaryFailure,
)
from plugins.notifications.channels import ConsoleChannel, FileChannel, SMTPChannel, get_channel
from plugins.notifications.models import OutboxEntry, OutboxStatus
from plugins.notifications.outbox import message_id_for
from plugins.notifications.settings import NotificationsSettings
from plugins.notifications.tasks import send_admin_email, send_email_notification

__all__ = [
    "Channel",
    "ConsoleChannel",
    "FileChannel",
    "Message",
    "NotificationError",
    "NotificationsSettings",
    "OutboxEntry",
    "OutboxStatus",
    "PermanentFailure",
    "SMTPChannel",
    "TemporaryFailure",
    "get_channel",
    "message_id_for",
    "send_admin_email",
    "send_email_notification",
]
