"""reports: the daily report of one UTC day, in every registered format.

Public surface (what other packages may import from `plugins.reports`):

- `ReportFormat` (protocol of a format) and `DailyReport` (the report a format
  renders and a listener receives), defined in `plugins.reports.api`;
- the built-in formats `JsonFormat`, `CsvFormat`, `HtmlFormat`;
- `StoredReport` (the `reports_daily` table), `ReportsSettings`;
- the task `generate_daily_reports` (`reports.generate_daily_reports`), its
  `RETRY` policy and `ReportError`;
- `hookspecs`: `register_report_formats`, `register_report_sections`,
  `on_report_generated`.

The hook implementations live in `plugins.reports.plugin` (the entry point).
"""

from __future__ import annotations

from plugins.reports import hookspecs
from plugins.reports.api import DailyReport, ReportFormat
from plugins.reports.formats import CsvFormat, HtmlFormat, JsonFormat
from plugins.reports.models import StoredReport
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
    "generate_daily_reports",
    "hookspecs",
]
