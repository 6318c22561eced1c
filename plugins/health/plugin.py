"""The health plugin's entry point (`health = "plugins.health.plugin"`).

Implementations of the core hooks (hookspecs, settings, task, schedule, CLI) and
of health's own `register_health_checks` for the built-in `database`, `broker`,
`queue_backlog` and `pending_transactions` checks. Health implements no hook owned by another
plugin, so it has no `integrations.py`.
"""

from __future__ import annotations

from typing import Any

from core import Schedule, hookimpl
from plugins.health import hookspecs
from plugins.health.api import HealthCheck
from plugins.health.checks import builtin_checks
from plugins.health.cli import health_command
from plugins.health.settings import PLUGIN, HealthSettings
from plugins.health.tasks import system_health_check

SCHEDULE_NAME = "system-health-check"
SCHEDULE_CRON = "*/30 * * * *"
EXPIRES_SECONDS = 25 * 60  # a run still queued when the next one is due is dropped


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add the hook health owns: `register_health_checks`."""
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_settings() -> tuple[str, type[HealthSettings]]:
    """HEALTH_PENDING_MAX_AGE_HOURS, HEALTH_CHECK_TIMEOUT_SECONDS, HEALTH_QUEUE_MAX_LENGTH,
    HEALTH_QUEUE_MAX_AGE_SECONDS (and HEALTH_SCHEDULE)."""
    return (PLUGIN, HealthSettings)


@hookimpl
def register_tasks() -> list[Any]:
    """The task `health.system_health_check` (queue "health")."""
    return [system_health_check]


@hookimpl
def register_schedule(settings: HealthSettings) -> list[Schedule]:
    """Every 30 minutes (UTC); `HEALTH_SCHEDULE` overrides or switches it off."""
    return [
        Schedule(
            SCHEDULE_NAME,
            system_health_check,
            cron=SCHEDULE_CRON,
            options={"expires": EXPIRES_SECONDS},
        )
    ]


@hookimpl
def register_health_checks() -> list[HealthCheck]:
    """The built-in checks, registered like any other plugin's."""
    return builtin_checks()


@hookimpl
def register_commands(cli: Any) -> None:
    """`banktasks health [--json]`."""
    cli.add_command(health_command)
