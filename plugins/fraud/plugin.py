"""The fraud plugin's entry point (`fraud = "plugins.fraud.plugin"`): every hook it implements.

Core hooks (hookspecs, settings, tasks, schedule, start-up check, CLI), its own
`register_fraud_rules` (the built-in rules), and, re-exported from
`plugins.fraud.integrations`, the hooks of reports, health and metrics it implements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from core import Schedule, TaskDef, hookimpl
from plugins.fraud import hookspecs
from plugins.fraud.api import Rule
from plugins.fraud.builtin import BUILTIN_RULES
from plugins.fraud.cli import add_commands
from plugins.fraud.engine import active_rules
from plugins.fraud.integrations import (
    collect_metrics,
    register_health_checks,
    register_report_sections,
)
from plugins.fraud.settings import FraudSettings
from plugins.fraud.tasks import (
    analyze_fraud_patterns,
    analyze_fraud_patterns_chunked,
    backtest_fraud_rules,
    combine_fraud_slices,
)

banktasks_name = "fraud"
"""The plugin's name when this module is registered directly (`create_app(plugins=[...])`)."""

SCHEDULE_NAME = "analyze-fraud-patterns"
EXPIRES_SECONDS = 14 * 60  # a run still queued when the next one is due is dropped


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add the hooks fraud owns: register_fraud_rules, on_fraud_alert, on_fraud_case_opened."""
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_migrations() -> Path:
    """The fraud plugin's own Alembic version chain (`migrations/`)."""
    return Path(__file__).resolve().parent / "migrations"


@hookimpl
def register_settings() -> tuple[str, type[FraudSettings]]:
    """("fraud", FraudSettings)."""
    return "fraud", FraudSettings


@hookimpl
def register_tasks() -> list[TaskDef]:
    """analyze_fraud_patterns, analyze_fraud_patterns_chunked and its chord callback, and
    backtest_fraud_rules."""
    return [
        analyze_fraud_patterns,
        analyze_fraud_patterns_chunked,
        combine_fraud_slices,
        backtest_fraud_rules,
    ]


@hookimpl
def register_schedule(settings: Any) -> list[Schedule]:
    """Every 15 minutes from the watermark (FRAUD_SCHEDULE overrides, `off` disables).

    A run left queued past the next one expires: the next run covers its window anyway.
    """
    return [
        Schedule(
            SCHEDULE_NAME,
            analyze_fraud_patterns,
            cron="*/15 * * * *",
            options={"expires": EXPIRES_SECONDS},
        )
    ]


@hookimpl
def register_fraud_rules() -> list[Rule]:
    """The built-in rules and the typologies, through the hook a third-party package uses."""
    from plugins.fraud.typologies import TYPOLOGY_RULES

    return [*BUILTIN_RULES, *TYPOLOGY_RULES]


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Check FRAUD_RULES / FRAUD_DISABLE_RULES against the registered rules, and the selected
    rules' `settings_fields`, at start-up."""
    active_rules(app.runtime, app.runtime.settings_for("fraud"))


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks alerts …`, `banktasks cases …` and `banktasks fraud backtest|plant|evaluate|
    suppress|unsuppress|suppressions|audit`."""
    add_commands(cli)


__all__ = [
    "collect_metrics",
    "configure_app",
    "register_commands",
    "register_fraud_rules",
    "register_health_checks",
    "register_hookspecs",
    "register_report_sections",
    "register_schedule",
    "register_settings",
    "register_tasks",
]
