"""Hooks the reports plugin owns: formats, sections, and "a report was generated".

Other plugins implement them with `@core.hookimpl`; they are added to the plugin
manager by `plugins.reports.plugin.register_hookspecs`. A plugin may implement them
while reports is disabled: its implementation is then simply never called.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from core import hookspec

if TYPE_CHECKING:
    from plugins.reports.api import DailyReport, ReportFormat


@hookspec
def register_report_formats() -> list[ReportFormat]:
    """Return report formats: objects with `name`, `extension`, `media_type`, `render(report)`.

    `render(report: DailyReport) -> bytes` must not touch the file system; the
    reports plugin writes the bytes atomically to `REPORTS_DIR` as
    `daily-report-<date>.<extension>`. Format names must be unique across plugins
    (lowercase letters, digits, `_` and `-`); they are what `formats=[…]` and
    `REPORTS_FORMATS` list. The built-in formats are `json`, `csv` and `html`.
    """
    return []


@hookspec
def register_report_sections(
    report_date: date,
) -> tuple[str, dict[str, Any]] | list[tuple[str, dict[str, Any]]] | None:
    """Return `(section name, data)` — or a list of them, or None — for the UTC day `report_date`.

    The day is `[report_date 00:00, next day 00:00)` UTC. Query with
    `core.session_scope()`, set-based (GROUP BY), not row by row. `data` must be
    JSON-safe (Decimal → str, datetime → ISO string). A section name must not
    clash with another section (`transactions` and `customers` are built in).
    An implementation that raises does not stop the report: the section is
    recorded as `{"error": "..."}` under the plugin's name and the error is logged.
    """
    return None


@hookspec
def on_report_generated(report: DailyReport) -> Any:
    """Called once per run, after the report's row and files are committed.

    `report.files` maps each written format to its path; `report.summary_text()`
    gives a plain-text summary. Return something truthy (e.g. `{"queued": task_id}`)
    when you sent or queued an e-mail: the task's result then says `emailed: true`.
    An implementation that raises is logged and does not fail the report.
    """
    return None
