"""Where a report goes: files under REPORTS_DIR (atomic) and one `reports_daily` row per day."""

from __future__ import annotations

import contextlib
import os
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import get_logger
from core.db import dialect_insert
from core.files import write_bytes_atomic
from plugins.reports.api import DailyReport
from plugins.reports.models import StoredReport

log = get_logger(__name__)


def file_stem(report_date: date) -> str:
    """`daily-report-2024-01-31`: the name of a day's files, before the extension."""
    return f"daily-report-{report_date.isoformat()}"


def write_files(
    directory: Path, report_date: date, rendered: dict[str, tuple[str, bytes]]
) -> dict[str, str]:
    """Write each `format → (extension, content)` atomically; return `format → absolute path`.

    Each file is a temp file renamed over `daily-report-<date>.<ext>`, so a reader
    sees the old file or the new one, never half of one.
    """
    files: dict[str, str] = {}
    for fmt, (extension, content) in rendered.items():
        written = write_bytes_atomic(directory, f"{file_stem(report_date)}.{extension}", content)
        files[fmt] = str(written.path.resolve())
    return files


def previous_files(session: Session, report_date: date) -> dict[str, str]:
    """The files the stored report of that day lists (empty if none)."""
    stored = session.execute(
        select(StoredReport.files).where(StoredReport.report_date == report_date)
    ).scalar_one_or_none()
    return dict(stored or {})


def upsert_report(session: Session, report: DailyReport) -> None:
    """Insert the day's row, or replace it (one row per day, whatever runs concurrently)."""
    dialect = session.get_bind().dialect.name
    insert = dialect_insert(dialect)
    values: dict[str, Any] = {
        "report_date": report.report_date,
        "generated_at": report.generated_at,
        "sections": report.sections,
        "files": report.files,
        "totals": report.totals,
        "runs": 1,
    }
    stmt = insert(StoredReport).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[StoredReport.report_date],
        set_={
            "generated_at": stmt.excluded.generated_at,
            "sections": stmt.excluded.sections,
            "files": stmt.excluded.files,
            "totals": stmt.excluded.totals,
            "runs": StoredReport.runs + 1,
        },
    )
    session.execute(stmt)


def remove_stale(report_date: date, old: dict[str, str], current: dict[str, str]) -> list[str]:
    """Delete files of an earlier run of the day that this run did not rewrite."""
    keep = {os.path.realpath(p) for p in current.values()}
    prefix = f"{file_stem(report_date)}."
    removed = []
    for path in old.values():
        if os.path.realpath(path) in keep or not Path(path).name.startswith(prefix):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    if removed:
        log.info(
            "report_stale_files_removed", report_date=report_date.isoformat(), count=len(removed)
        )
    return removed


def load_report(session: Session, report_date: date | None = None) -> DailyReport | None:
    """The stored report of a day (default: the latest day stored), or None."""
    stmt = select(StoredReport)
    if report_date is None:
        stmt = stmt.order_by(StoredReport.report_date.desc()).limit(1)
    else:
        stmt = stmt.where(StoredReport.report_date == report_date)
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        return None
    return DailyReport(
        report_date=row.report_date,
        generated_at=row.generated_at,
        sections=row.sections,
        files=row.files,
    )
