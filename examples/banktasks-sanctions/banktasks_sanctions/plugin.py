"""The sanctions plugin's entry point (`sanctions = "banktasks_sanctions.plugin"`).

The core hooks: settings, the task and its daily schedule. The hooks owned by
fraud, reports and health are implemented in `integrations.py` and re-exported
here, so that pluggy finds every implementation on this one module.
"""

from __future__ import annotations

from typing import Any

from core import Schedule, hookimpl

from banktasks_sanctions.integrations import (
    register_fraud_rules,
    register_health_checks,
    register_report_sections,
)
from banktasks_sanctions.settings import PLUGIN, SanctionsSettings
from banktasks_sanctions.tasks import refresh_sanctions_list

SCHEDULE_NAME = "refresh-sanctions-list"
SCHEDULE_CRON = "0 5 * * *"  # 05:00 UTC; SANCTIONS_SCHEDULE overrides it, `off` disables it


@hookimpl
def register_settings() -> tuple[str, type[SanctionsSettings]]:
    """`SANCTIONS_LIST_PATH`, `SANCTIONS_MAX_AGE_HOURS` (and `SANCTIONS_SCHEDULE`)."""
    return PLUGIN, SanctionsSettings


@hookimpl
def register_tasks() -> list[Any]:
    """The task `sanctions.refresh_sanctions_list`."""
    return [refresh_sanctions_list]


@hookimpl
def register_schedule(settings: SanctionsSettings) -> list[Schedule]:
    """Refresh the list every day at 05:00 UTC."""
    return [Schedule(SCHEDULE_NAME, refresh_sanctions_list, cron=SCHEDULE_CRON)]


__all__ = [
    "register_fraud_rules",
    "register_health_checks",
    "register_report_sections",
    "register_schedule",
    "register_settings",
    "register_tasks",
]
