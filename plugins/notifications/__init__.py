"""notifications: e-mail users and admins through pluggable channels, exactly once per key.

Public surface for other plugins and third-party channel packages:
`Channel`, `Message`, `TemporaryFailure`, `PermanentFailure`, `OutboxEntry`,
`NotificationsSettings`, and the tasks `send_email_notification` /
`send_admin_email`. The hook implementations below are what pluggy registers.
"""

from __future__ import annotations

from plugins.notifications.channels import (
    Channel,
    ConsoleChannel,
    FileChannel,
    SMTPChannel,
    get_channel,
)
from plugins.notifications.errors import NotificationError, PermanentFailure, TemporaryFailure
from plugins.notifications.message import Message, message_id_for
from plugins.notifications.models import OutboxEntry, OutboxStatus
from plugins.notifications.plugin import (
    configure_app,
    on_export_ready,
    on_fraud_alert,
    on_report_generated,
    register_commands,
    register_hookspecs,
    register_notification_channels,
    register_settings,
    register_tasks,
)
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
    "configure_app",
    "get_channel",
    "message_id_for",
    "on_export_ready",
    "on_fraud_alert",
    "on_report_generated",
    "register_commands",
    "register_hookspecs",
    "register_notification_channels",
    "register_settings",
    "register_tasks",
    "send_admin_email",
    "send_email_notification",
]
