"""`banktasks reports list|show`: read stored reports from the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import click
from sqlalchemy import inspect, select

from core import current


@contextmanager
def _session() -> Iterator[Any]:
    """A session on the app's database; a clear message when the tables are missing."""
    db = current().db
    if not inspect(db.engine).has_table("reports_daily"):
        raise click.ClickException(
            "the reports table does not exist yet; run `banktasks db init` (or generate a "
            "report) first"
        )
    with db.session() as session:
        yield session


@click.group("reports")
def reports_group() -> None:
    """Stored daily reports (generate one with `banktasks run generate_daily_reports`)."""


@reports_group.command("show")
@click.argument("report_date", required=False, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--json", "as_json", is_flag=True, help="Print the stored report as JSON.")
def show(report_date: object, as_json: bool) -> None:
    """Print the stored report of REPORT_DATE (YYYY-MM-DD; default: the latest one)."""
    from plugins.reports.storage import load_report

    day: date | None = report_date.date() if report_date is not None else None  # type: ignore[attr-defined]
    with _session() as session:
        report = load_report(session, day)
    if report is None:
        which = day.isoformat() if day else "any day"
        hint = f" report_date={day.isoformat()}" if day else ""
        raise click.ClickException(
            f"no report stored for {which}; generate one with "
            f"`banktasks run generate_daily_reports{hint} --wait`"
        )
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        click.echo(report.summary_text(), nl=False)


@reports_group.command("list")
@click.option("--limit", default=30, show_default=True, type=click.IntRange(1))
def list_reports(limit: int) -> None:
    """List stored reports, newest first: date, generated at, transactions, runs."""
    from plugins.reports.models import StoredReport

    stmt = select(StoredReport).order_by(StoredReport.report_date.desc()).limit(limit)
    with _session() as session:
        rows = session.execute(stmt).scalars().all()
        lines = [
            f"{r.report_date.isoformat()}  generated {r.generated_at.isoformat()}  "
            f"transactions={r.totals.get('transactions', 0)}  runs={r.runs}"
            for r in rows
        ]
    if not lines:
        click.echo("no reports stored yet")
    for line in lines:
        click.echo(line)
