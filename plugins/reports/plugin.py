"""The reports plugin's entry point (`reports = "plugins.reports.plugin"`).

Implementations of the core hooks (hookspecs, settings, task, schedule, start-up
check, CLI) and of reports' own `register_report_formats` for the built-in json,
csv and html formats; re-exported from `plugins.reports.integrations`, the metrics
default plugin's `collect_metrics` (the report's lateness).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import Schedule, hookimpl
from plugins.reports import hookspecs
from plugins.reports.api import ReportFormat
from plugins.reports.formats import builtin_formats, collect_formats
from plugins.reports.integrations import collect_metrics
from plugins.reports.settings import ReportsSettings
from plugins.reports.tasks import PLUGIN, choose_formats, generate_daily_reports

SCHEDULE_NAME = "generate-daily-reports"
SCHEDULE_CRON = "0 0 * * *"


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add the hooks reports owns: formats, sections, on_report_generated."""
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_migrations() -> Path:
    """The reports plugin's own Alembic version chain (`migrations/`)."""
    return Path(__file__).resolve().parent / "migrations"


@hookimpl
def register_settings() -> tuple[str, type[ReportsSettings]]:
    """`REPORTS_DIR`, `REPORTS_FORMATS` (and `REPORTS_SCHEDULE`)."""
    return PLUGIN, ReportsSettings


@hookimpl
def register_tasks() -> list[Any]:
    """The task: `reports.generate_daily_reports`."""
    return [generate_daily_reports]


@hookimpl
def register_schedule(settings: Any) -> list[Schedule]:
    """Every day at 00:00 UTC, for the day that just ended."""
    return [Schedule(SCHEDULE_NAME, generate_daily_reports, cron=SCHEDULE_CRON)]


@hookimpl
def register_report_formats() -> list[ReportFormat]:
    """The built-in formats, registered like any third-party one: json, csv and html."""
    return builtin_formats()


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Stop start-up when REPORTS_FORMATS names a format no enabled plugin registers."""
    runtime = app.runtime
    ours: ReportsSettings = runtime.settings_for(PLUGIN)
    choose_formats(None, ours.formats, collect_formats(runtime.plugins))


@hookimpl
def register_commands(cli: Any) -> None:
    """`banktasks reports list|show [DATE]`."""
    from plugins.reports.cli import reports_group

    cli.add_command(reports_group)


__all__ = [
    "collect_metrics",
    "configure_app",
    "register_commands",
    "register_hookspecs",
    "register_report_formats",
    "register_schedule",
    "register_settings",
    "register_tasks",
]
