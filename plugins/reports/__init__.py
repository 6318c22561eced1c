"""reports: the daily report of one UTC day, in every registered format.

Public surface for other plugins: `ReportFormat`, `DailyReport`, `StoredReport`,
`ReportsSettings` and the hookspecs module (`register_report_formats`,
`register_report_sections`, `on_report_generated`). The task is
`reports.generate_daily_reports`.
"""

from __future__ import annotations

from plugins.reports import hookspecs
from plugins.reports.formats import (
    CsvFormat,
    HtmlFormat,
    JsonFormat,
    register_report_formats,
)
from plugins.reports.models import StoredReport
from plugins.reports.plugin import (
    configure_app,
    register_commands,
    register_hookspecs,
    register_schedule,
    register_settings,
    register_tasks,
)
from plugins.reports.report import DailyReport, ReportFormat
from plugins.reports.settings import ReportsSettings
from plugins.reports.tasks import RETRY, ReportError, generate_daily_reports

__all__ = [
    "RETRY",
    "CsvFormat",
    "DailyReport",
    "HtmlFormat",
    "JsonFormat",
    "ReportError",
    "ReportFormat",
    "ReportsSettings",
    "StoredReport",
    "configure_app",
    "generate_daily_reports",
    "hookspecs",
    "register_commands",
    "register_hookspecs",
    "register_report_formats",
    "register_schedule",
    "register_settings",
    "register_tasks",
]
