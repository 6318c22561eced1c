"""The same report on PostgreSQL as on SQLite, to the cent."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from banktasks_testing import seed_data
from core.models import Transaction
from plugins.reports import generate_daily_reports
from plugins.reports.sections import day_window

from .helpers import add_account, add_tx, at, stored_rows

NOW = datetime(2024, 2, 2, 6, 0, tzinfo=UTC)
DAYS = [date(2024, 1, 28) + timedelta(days=i) for i in range(6)]  # partial, full…, partial


def _build(app: Any) -> tuple[dict[date, dict[str, Any]], int]:
    """Seed, add drift-prone and boundary rows, report every day; return sections by day."""
    seeded = seed_data(app.runtime.db, users=40, transactions=4000, seed_value=11, days=5, now=NOW)
    with app.runtime.db.session() as session:
        usd, eur = add_account(session), add_account(session, currency="EUR")
        for i in range(300):
            add_tx(session, usd, ("0.10", "0.20", "0.30")[i % 3], at(DAYS[2], i % 24, i % 60))
        add_tx(session, eur, "98765432.19", at(DAYS[2], 23, 59, 59, 999999), kind="deposit")
        add_tx(session, eur, "0.01", at(DAYS[3]), kind="fee", status="failed")
    for day in DAYS:
        generate_daily_reports(report_date=day)
    return {row.report_date: row.sections for row in stored_rows(app)}, seeded.transactions + 302


def _python_sums(app: Any, day: date) -> dict[str, tuple[int, str]]:
    """Per currency: (count, Decimal sum as text), added up in Python from the rows."""
    start, end = day_window(day)
    sums: dict[str, Decimal] = defaultdict(Decimal)
    counts: dict[str, int] = defaultdict(int)
    with app.runtime.db.session() as session:
        stmt = select(Transaction.currency, Transaction.amount).where(
            Transaction.created_at >= start, Transaction.created_at < end
        )
        for currency, amount in session.execute(stmt):
            sums[currency] += amount
            counts[currency] += 1
    return {c: (counts[c], str(v)) for c, v in sorted(sums.items())}


@pytest.mark.postgres
def test_postgres_report_matches_sqlite_to_the_cent(make_app: Any, pg_database_url: str) -> None:
    lite_app = make_app("reports")
    assert lite_app.runtime.db.dialect == "sqlite"
    lite, lite_count = _build(lite_app)
    lite_sums = {day: _python_sums(lite_app, day) for day in DAYS}

    pg_app = make_app("reports", database_url=pg_database_url)
    assert pg_app.runtime.db.dialect == "postgresql"
    pg, pg_count = _build(pg_app)

    assert set(pg) == set(lite) == set(DAYS)
    for day in DAYS:
        assert pg[day] == lite[day], day
        by_currency = pg[day]["transactions"]["by_currency"]
        assert {c: (v["count"], v["sum"]) for c, v in by_currency.items()} == lite_sums[day]
    assert pg[DAYS[2]]["transactions"]["by_currency"]["EUR"] == {
        "count": 1,
        "sum": "98765432.19",
    }
    assert pg_count == lite_count

    generate_daily_reports(report_date=DAYS[2])  # idempotent on PostgreSQL too
    rows = stored_rows(pg_app)
    assert len(rows) == len(DAYS)
    assert next(r for r in rows if r.report_date == DAYS[2]).runs == 2
