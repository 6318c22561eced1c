"""`generate_daily_reports`: one UTC day's figures → files in every format, a stored row, a hook."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

from sqlalchemy.exc import DisconnectionError, OperationalError

from core import (
    BanktasksError,
    ConfigError,
    PluginSet,
    RetryPolicy,
    TaskArgumentError,
    current,
    get_logger,
    task,
)
from core.db import utcnow
from plugins.reports.api import DailyReport, ReportFormat
from plugins.reports.formats import collect_formats
from plugins.reports.sections import builtin_sections, plugin_sections, short_error
from plugins.reports.settings import ReportsSettings
from plugins.reports.storage import previous_files, remove_stale, upsert_report, write_files

PLUGIN = "reports"
TASK = "reports.generate_daily_reports"
log = get_logger(__name__)

RETRY = RetryPolicy(
    max_retries=3,
    backoff=30,
    backoff_max=600,
    jitter=True,
    retry_on=(OperationalError, DisconnectionError, OSError),
)
"""Database connection errors and file-system errors retry: 30 s, 60 s, 120 s (full jitter)."""


class ReportError(BanktasksError):
    """The report could not be produced (e.g. every format failed to render). Not retried."""


def default_report_date() -> date:
    """The previous UTC day: what the midnight run reports on."""
    return (utcnow() - timedelta(days=1)).date()


def choose_formats(
    requested: list[str] | None, configured: list[str] | None, available: dict[str, ReportFormat]
) -> dict[str, ReportFormat]:
    """The formats to write: the argument, else REPORTS_FORMATS, else every registered one."""
    listing = ", ".join(sorted(available)) or "(none registered)"
    if requested is None and configured is None:
        return dict(available)
    names = list(dict.fromkeys(n.strip().lower() for n in (requested or configured or [])))
    if requested is not None and not names:
        raise TaskArgumentError(
            f"{TASK}: formats=[] asks for no format; name at least one of: {listing} "
            "(or leave formats out for REPORTS_FORMATS / all formats)"
        )
    unknown = [n for n in names if n not in available]
    if unknown:
        what = ", ".join(f"{n!r:.40}" for n in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        if requested is not None:
            raise TaskArgumentError(
                f"{TASK}: unknown report format(s) {what}; available formats: {listing}"
            )
        raise ConfigError(
            f"REPORTS_FORMATS={','.join(names)}: unknown report format(s) {what}; "
            f"available formats: {listing}"
        )
    return {n: available[n] for n in names}


def render_all(
    report: DailyReport, formats: dict[str, ReportFormat]
) -> tuple[dict[str, tuple[str, bytes]], dict[str, str]]:
    """Render every format in memory; a format that fails is logged and left out."""
    rendered: dict[str, tuple[str, bytes]] = {}
    errors: dict[str, str] = {}
    for name, fmt in formats.items():
        try:
            content = fmt.render(report.model_copy(deep=True))
            if not isinstance(content, bytes | bytearray):
                raise TypeError(f"render() returned {type(content).__name__}, expected bytes")
        except Exception as exc:
            errors[name] = short_error(exc)
            log.error(
                "report_format_failed",
                format=name,
                report_date=report.report_date.isoformat(),
                error=errors[name],
                exc_info=True,
            )
            continue
        rendered[name] = (fmt.extension, bytes(content))
    return rendered, errors


def emit_generated(plugins: PluginSet, report: DailyReport) -> tuple[bool, dict[str, str]]:
    """Call each `on_report_generated` implementation once; True if any returned truthy.

    A listener that raises is logged and reported; the report itself stands.
    Listeners get a copy, so the stored report is not theirs to change.
    """
    emailed = False
    errors: dict[str, str] = {}
    for outcome in plugins.call_each("on_report_generated", report=report.model_copy(deep=True)):
        if outcome.error is not None:
            errors[outcome.plugin] = short_error(outcome.error)
        else:
            emailed = emailed or bool(outcome.result)
    return emailed, errors


def check_request(report_date: date | None = None, formats: list[str] | None = None) -> None:
    """Refuse in the caller of `.delay()` (and again in the worker) a day in the future and
    formats that are not registered, so such a request never reaches the broker."""
    today = utcnow().date()
    if report_date is not None and report_date > today:
        raise TaskArgumentError(
            f"{TASK}: report_date={report_date.isoformat()} is in the future (today is "
            f"{today.isoformat()} UTC); report a day that has started, or leave it out for "
            "yesterday"
        )
    if formats is not None:
        choose_formats(formats, None, collect_formats(current().plugins))


@task(queue=PLUGIN, retry=RETRY, example={}, check=check_request, track_started=True)
def generate_daily_reports(
    report_date: date | None = None, formats: list[str] | None = None
) -> dict[str, Any]:
    """Report one UTC day (default: yesterday) in every format; store it; tell listeners.

    Writes `daily-report-<date>.<ext>` for each format under REPORTS_DIR (atomic
    rename) and upserts the day's `reports_daily` row: re-running a day replaces
    its files and row. Then calls `on_report_generated(report)`. Returns
    `report_date`, `files` (format → path), `emailed`, `totals` and more.
    """
    started = time.perf_counter()
    runtime = current()
    settings: ReportsSettings = runtime.settings_for(PLUGIN)
    day = report_date or default_report_date()  # check_request refused a future day
    chosen = choose_formats(formats, settings.formats, collect_formats(runtime.plugins))

    with runtime.db.session() as session:
        sections = builtin_sections(session, day)
    extra, section_errors = plugin_sections(runtime.plugins, day, set(sections))
    sections.update(extra)
    report = DailyReport(report_date=day, generated_at=utcnow(), sections=sections)

    rendered, format_errors = render_all(report, chosen)
    if not rendered:
        raise ReportError(
            f"{TASK}: every requested format failed to render for {day.isoformat()}: "
            + "; ".join(f"{name}: {msg}" for name, msg in format_errors.items())
        )
    directory = settings.reports_dir(runtime.settings.var_dir)
    report.files = write_files(directory, day, rendered)
    with runtime.db.session() as session:
        old_files = previous_files(session, day)
        upsert_report(session, report)
    remove_stale(day, old_files, report.files)

    emailed, listener_errors = emit_generated(runtime.plugins, report)
    totals = report.totals
    log.info(
        "report_generated",
        report_date=day.isoformat(),
        transactions=totals["transactions"],
        formats=sorted(report.files),
        emailed=emailed,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return {
        "report_date": day.isoformat(),
        "generated_at": report.generated_at.isoformat(),
        "files": dict(report.files),
        "emailed": emailed,
        "totals": totals,
        "sections": list(report.sections),
        "errors": {
            "sections": section_errors,
            "formats": format_errors,
            "listeners": listener_errors,
        },
    }
