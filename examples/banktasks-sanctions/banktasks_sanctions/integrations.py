"""What sanctions gives its neighbours: a fraud rule, a report section and a health check.

Each is an implementation of a hook another plugin owns (fraud, reports, health).
None of them imports that plugin: they use what the hook passes and return plain
data, so this plugin loads (and these hooks are simply not called) when a neighbour
is disabled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from core import hookimpl, session_scope
from sqlalchemy import func, select

from banktasks_sanctions.models import STATE_ID, SanctionsListState
from banktasks_sanctions.screening import matches

RULE = "sanctioned_counterparty"
SECTION = "sanctions"
CHECK = "sanctions_list_fresh"


# --8<-- [start:rule]
@dataclass(frozen=True)
class Hit:
    """A finding, in the shape fraud's engine reads (the attributes of its `Finding`)."""

    account_id: int
    transaction_id: int | None
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    window_start: datetime | None = None
    severity: str | None = None


class SanctionedCounterparty:
    """Fraud rule: a transaction whose counterparty is on the sanctions list."""

    name = RULE
    version = "1"
    severity = "critical"

    def find(self, ctx: Any) -> Iterator[Hit]:
        """One finding per transaction in `[ctx.since, ctx.until)` that matches the list."""
        for row in ctx.session.execute(matches(ctx.since, ctx.until)):
            yield Hit(
                account_id=row.account_id,
                transaction_id=row.id,
                score=1.0,
                evidence={
                    "counterparty": row.counterparty,
                    "listed_name": row.listed_name,
                    "program": row.program,
                    "amount": row.amount,
                    "currency": row.currency,
                    "at": row.created_at,
                },
            )


@hookimpl
def register_fraud_rules() -> list[Any]:
    """Fraud's hook: the rule `sanctioned_counterparty` (severity critical)."""
    return [SanctionedCounterparty()]


# --8<-- [end:rule]


# --8<-- [start:section]
def _money(value: Decimal | None) -> str:
    return f"{(value or Decimal('0')).quantize(Decimal('0.01'))}"


@hookimpl
def register_report_sections(report_date: date) -> tuple[str, dict[str, Any]]:
    """Reports' hook: section `sanctions`, the day's transactions with a listed counterparty."""
    start = datetime.combine(report_date, time(0), tzinfo=UTC)
    hits = matches(start, start + timedelta(days=1)).subquery()
    with session_scope() as session:
        by_currency = {
            row.currency: {"count": int(row.n), "sum": _money(row.total)}
            for row in session.execute(
                select(
                    hits.c.currency, func.count().label("n"), func.sum(hits.c.amount).label("total")
                )
                .group_by(hits.c.currency)
                .order_by(hits.c.currency)
            )
        }
        accounts = session.execute(
            select(func.count(func.distinct(hits.c.account_id)))
        ).scalar_one()
        state = session.get(SanctionsListState, STATE_ID)
    return SECTION, {
        "hits": sum(entry["count"] for entry in by_currency.values()),
        "accounts": int(accounts),
        "by_currency": by_currency,
        "list_entries": state.entries if state else 0,
        "list_refreshed_at": state.refreshed_at.isoformat() if state else None,
    }


# --8<-- [end:section]


# --8<-- [start:check]
@dataclass(frozen=True)
class ListFreshCheck:
    """Health check: down when the list was never loaded, degraded when it is older than
    `SANCTIONS_MAX_AGE_HOURS` (read from `ctx.settings`: this plugin's own settings)."""

    name: str = CHECK

    def run(self, ctx: Any) -> dict[str, Any]:
        """The list's age in hours as of `ctx.now`, against the limit."""
        limit = ctx.settings.max_age_hours
        with ctx.db.session() as session:
            state = session.get(SanctionsListState, STATE_ID)
        if state is None:
            return {
                "status": "down",
                "detail": "the sanctions list was never loaded; run "
                "`banktasks run sanctions.refresh_sanctions_list --wait`",
                "value": None,
                "threshold": limit,
            }
        age = round((ctx.now - state.refreshed_at).total_seconds() / 3600, 1)
        fresh = age <= limit
        return {
            "status": "ok" if fresh else "degraded",
            "detail": f"{state.entries} names, loaded {age} h ago from {state.source}"
            + ("" if fresh else f"; older than SANCTIONS_MAX_AGE_HOURS={limit}"),
            "value": age,
            "threshold": limit,
        }


@hookimpl
def register_health_checks() -> list[Any]:
    """Health's hook: the check `sanctions_list_fresh`."""
    return [ListFreshCheck()]


# --8<-- [end:check]
