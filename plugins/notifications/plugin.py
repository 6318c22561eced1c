"""The notifications plugin's entry point: core hooks, its own hook's built-ins, integrations.

Core hooks: `register_hookspecs`, `register_settings`, `register_tasks`,
`configure_app`, `register_commands`. Its own hook: `register_notification_channels`
(the built-in smtp, file and console channels). The hooks owned by reports, fraud
and export, and the metrics default plugin's `register_metrics`/`collect_metrics`,
are implemented in `integrations.py` and re-exported here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from core import ConfigError, hookimpl
from plugins.notifications import hookspecs
from plugins.notifications.api import Channel
from plugins.notifications.channels import PLUGIN, builtin_channels, get_channel
from plugins.notifications.cli import outbox_command
from plugins.notifications.integrations import (
    collect_metrics,
    on_export_ready,
    on_fraud_case_opened,
    on_report_generated,
    register_metrics,
)
from plugins.notifications.sending import MAX_RETRIES, lease_for
from plugins.notifications.settings import NotificationsSettings
from plugins.notifications.tasks import send_admin_email, send_email_notification

__all__ = [
    "collect_metrics",
    "configure_app",
    "on_export_ready",
    "on_fraud_case_opened",
    "on_report_generated",
    "register_commands",
    "register_hookspecs",
    "register_metrics",
    "register_notification_channels",
    "register_settings",
    "register_tasks",
]


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add `register_notification_channels`."""
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_migrations() -> Path:
    """The notifications plugin's own Alembic version chain (`migrations/`)."""
    return Path(__file__).resolve().parent / "migrations"


@hookimpl
def register_settings() -> tuple[str, type[NotificationsSettings]]:
    """`NotificationsSettings` under the name `notifications`."""
    return (PLUGIN, NotificationsSettings)


@hookimpl
def register_tasks() -> list[Any]:
    """`send_email_notification` and `send_admin_email`, on the `notifications` queue."""
    return [send_email_notification, send_admin_email]


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Stop start-up with one clear line when EMAIL_BACKEND names no registered channel,
    or when the broker's visibility timeout is too short for the outbox lease."""
    runtime = app.runtime
    if PLUGIN not in runtime.plugin_settings:  # registered under another name: nothing to check
        return
    get_channel(runtime=runtime)
    _check_lease_fits_retries(app, runtime.settings_for(PLUGIN))


def _check_lease_fits_retries(app: Any, settings: NotificationsSettings) -> None:
    """Refuse a broker visibility timeout too short for the outbox lease.

    A copy of a task that finds its key leased (by a worker that died mid-send, say)
    retries until the lease has expired; retries wait at most half the visibility
    timeout (core caps them), so the retries must add up to the lease, or that e-mail
    would give up and never be sent. Only a low BROKER_VISIBILITY_TIMEOUT can fail this.
    """
    timeout = app.conf.broker_transport_options.get("visibility_timeout")
    lease = lease_for(settings).total_seconds()
    if timeout and (timeout // 2) * MAX_RETRIES < lease:
        needed = 2 * math.ceil(lease / MAX_RETRIES)
        raise ConfigError(
            f"BROKER_VISIBILITY_TIMEOUT={timeout} is too short for the e-mail outbox: a "
            f"delivery holds its key for up to {lease:.0f} s (60 s + 10 x SMTP_TIMEOUT) and "
            f"{MAX_RETRIES} retries of at most {timeout // 2} s would give up on a key held "
            f"by a worker that died; set it to at least {needed} or lower SMTP_TIMEOUT"
        )


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks outbox [--status failed] [--limit N] [--json]`."""
    cli.add_command(outbox_command)


@hookimpl
def register_notification_channels() -> list[Channel]:
    """The built-in channels: smtp, file and console, registered like any other."""
    return builtin_channels()
