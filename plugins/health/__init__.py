"""health: database, broker and pending-transaction checks, plus any check a plugin adds.

Public surface for other plugins: `HealthCheck` (protocol), `CheckContext`,
`CheckResult`, and the hookspec `register_health_checks()` in `plugins.health.hookspecs`.
"""

from __future__ import annotations

from typing import Any

from core import Schedule, hookimpl
from plugins.health import hookspecs
from plugins.health.api import STATUSES, CheckContext, CheckResult, HealthCheck, worst
from plugins.health.checks import BrokerCheck, DatabaseCheck, PendingTransactionsCheck
from plugins.health.cli import health_command
from plugins.health.runner import run_checks
from plugins.health.settings import HealthSettings
from plugins.health.tasks import system_health_check

SCHEDULE_NAME = "system-health-check"
SCHEDULE_CRON = "*/30 * * * *"
EXPIRES_SECONDS = 25 * 60  # a run still queued when the next one is due is dropped


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add `register_health_checks`."""
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_settings() -> tuple[str, type[HealthSettings]]:
    """HEALTH_PENDING_MAX_AGE_HOURS, HEALTH_CHECK_TIMEOUT_SECONDS, HEALTH_SCHEDULE."""
    return ("health", HealthSettings)


@hookimpl
def register_tasks() -> list[Any]:
    """The health task (queue "health")."""
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
    """The built-in checks, registered like any third-party one."""
    return [DatabaseCheck(), BrokerCheck(), PendingTransactionsCheck()]


@hookimpl
def register_commands(cli: Any) -> None:
    """`banktasks health [--json]`."""
    cli.add_command(health_command)


__all__ = [
    "STATUSES",
    "BrokerCheck",
    "CheckContext",
    "CheckResult",
    "DatabaseCheck",
    "HealthCheck",
    "HealthSettings",
    "PendingTransactionsCheck",
    "hookspecs",
    "run_checks",
    "system_health_check",
    "worst",
]
