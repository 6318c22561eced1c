"""Hook implementations of the fraud plugin (re-exported by `plugins.fraud`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from core import Schedule, hookimpl

SCHEDULE_NAME = "analyze-fraud-patterns"
EXPIRES_SECONDS = 14 * 60  # a run still queued when the next one is due is dropped


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add the hooks fraud owns: register_fraud_rules, on_fraud_alert."""
    from plugins.fraud import hookspecs

    pm.add_hookspecs(hookspecs)


@hookimpl
def register_settings() -> tuple[str, type]:
    """("fraud", FraudSettings)."""
    from plugins.fraud.settings import FraudSettings

    return "fraud", FraudSettings


@hookimpl
def register_tasks() -> list[Any]:
    """analyze_fraud_patterns, analyze_fraud_patterns_chunked and its chord callback."""
    from plugins.fraud.tasks import (
        analyze_fraud_patterns,
        analyze_fraud_patterns_chunked,
        combine_fraud_slices,
    )

    return [analyze_fraud_patterns, analyze_fraud_patterns_chunked, combine_fraud_slices]


@hookimpl
def register_schedule(settings: Any) -> list[Schedule]:
    """Every 15 minutes from the watermark (FRAUD_SCHEDULE overrides, `off` disables).

    A run left queued past the next one expires: the next run covers its window anyway.
    """
    from plugins.fraud.tasks import analyze_fraud_patterns

    return [
        Schedule(
            SCHEDULE_NAME,
            analyze_fraud_patterns,
            cron="*/15 * * * *",
            options={"expires": EXPIRES_SECONDS},
        )
    ]


@hookimpl
def register_fraud_rules() -> list[Any]:
    """The built-in rules, through the same hook a third-party rule package uses."""
    from plugins.fraud.builtin import BUILTIN_RULES

    return list(BUILTIN_RULES)


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Check FRAUD_RULES / FRAUD_DISABLE_RULES against the registered rules at start-up."""
    from plugins.fraud.rules import collect_rules, select_rules

    select_rules(collect_rules(app.runtime.plugins), app.runtime.settings_for("fraud"))


@hookimpl
def register_commands(cli: Any) -> None:
    """`banktasks alerts list|show|investigate|resolve`."""
    from plugins.fraud.cli import add_commands

    add_commands(cli)


@hookimpl
def register_report_sections(report_date: date) -> tuple[str, dict[str, Any]]:
    """Reports' hook: alerts opened on `report_date` (UTC), by rule."""
    from plugins.fraud.integrations import report_section

    return report_section(report_date)


@hookimpl
def register_health_checks() -> list[Any]:
    """Health's hook: the `fraud_unresolved_alerts` check."""
    from plugins.fraud.integrations import UnresolvedAlertsCheck

    return [UnresolvedAlertsCheck()]
