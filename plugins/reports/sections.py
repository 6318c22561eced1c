"""Report sections: the built-in ones (set-based SQL) and those other plugins add.

A day is `[00:00, 24:00)` UTC. Every figure comes from a GROUP BY or COUNT in
the database; money sums are exact Decimals (the Money type stores cents), given
as strings with two places.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import PluginSet, current, data_scope, get_logger
from core.models import TransactionKind, TransactionStatus
from plugins.reports.values import ensure_json_safe

log = get_logger(__name__)

BUILTIN_SECTIONS = ("transactions", "customers")
MAX_ERROR_CHARS = 300


def day_window(report_date: date) -> tuple[datetime, datetime]:
    """`[start, end)` of the UTC day: midnight to the next midnight."""
    start = datetime.combine(report_date, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _money(value: Decimal | None) -> str:
    return f"{(value or Decimal('0')).quantize(Decimal('0.01'))}"


def _empty() -> dict[str, Any]:
    return {"count": 0, "sums": {}}


def _grouped(
    session: Session, column: Any, start: datetime, end: datetime
) -> dict[str, dict[str, Any]]:
    """Count and per-currency sums of the day's transactions, grouped by `column`."""
    Transaction = current().data.Transaction
    key = column.label("key")
    stmt = (
        select(
            key,
            Transaction.currency,
            func.count(Transaction.id).label("n"),
            func.sum(Transaction.amount).label("total"),
        )
        .where(Transaction.created_at >= start, Transaction.created_at < end)
        .group_by(column, Transaction.currency)
        .order_by(column, Transaction.currency)
    )
    groups: dict[str, dict[str, Any]] = {}
    for row in session.execute(stmt):  # one row per (group, currency), not per transaction
        name = getattr(row.key, "value", row.key)
        entry = groups.setdefault(str(name), {"count": 0, "sums": {}})
        entry["count"] += int(row.n)
        entry["sums"][row.currency] = _money(row.total)
    return groups


def transactions_section(session: Session, report_date: date) -> dict[str, Any]:
    """Counts and exact sums of the day's transactions by currency, kind and status."""
    with data_scope(session) as data:
        return _transactions(data, report_date)


def _transactions(session: Session, report_date: date) -> dict[str, Any]:
    Transaction = current().data.Transaction
    start, end = day_window(report_date)
    in_day = (Transaction.created_at >= start, Transaction.created_at < end)
    by_currency_stmt = (
        select(
            Transaction.currency,
            func.count(Transaction.id).label("n"),
            func.sum(Transaction.amount).label("total"),
        )
        .where(*in_day)
        .group_by(Transaction.currency)
        .order_by(Transaction.currency)
    )
    by_currency = {
        row.currency: {"count": int(row.n), "sum": _money(row.total)}
        for row in session.execute(by_currency_stmt)
    }
    active_accounts = session.execute(
        select(func.count(func.distinct(Transaction.account_id))).where(*in_day)
    ).scalar_one()
    found_kinds = _grouped(session, Transaction.kind, start, end)
    found_statuses = _grouped(session, Transaction.status, start, end)
    by_kind = {k.value: found_kinds.get(k.value) or _empty() for k in TransactionKind}
    by_status = {s.value: found_statuses.get(s.value) or _empty() for s in TransactionStatus}
    # Values outside the enums (written by other code) are still reported, never dropped.
    by_kind.update({k: v for k, v in found_kinds.items() if k not in by_kind})
    by_status.update({k: v for k, v in found_statuses.items() if k not in by_status})
    return {
        "count": sum(row["count"] for row in by_currency.values()),
        "active_accounts": int(active_accounts),
        "by_currency": by_currency,
        "by_kind": by_kind,
        "by_status": by_status,
        "pending": by_status["pending"]["count"],
        "failed": by_status["failed"]["count"],
    }


def customers_section(session: Session, report_date: date) -> dict[str, Any]:
    """Users and accounts created during the day."""
    start, end = day_window(report_date)
    tables = current().data
    User, Account = tables.User, tables.Account
    with data_scope(session) as data:
        new_users = data.execute(
            select(func.count(User.id)).where(User.created_at >= start, User.created_at < end)
        ).scalar_one()
        new_accounts = data.execute(
            select(func.count(Account.id)).where(
                Account.created_at >= start, Account.created_at < end
            )
        ).scalar_one()
    return {"new_users": int(new_users), "new_accounts": int(new_accounts)}


def builtin_sections(session: Session, report_date: date) -> dict[str, dict[str, Any]]:
    """The sections every report has: `transactions` and `customers`."""
    return {
        "transactions": transactions_section(session, report_date),
        "customers": customers_section(session, report_date),
    }


def short_error(exc: BaseException) -> str:
    """`Type: message`, cut to a length fit for a report and a log line."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _pairs(result: Any) -> list[tuple[str, dict[str, Any]]]:
    """Normalise what a section hook returned into (name, JSON-safe dict) pairs."""
    if result is None:
        return []
    items = [result] if isinstance(result, tuple) else result
    if not isinstance(items, list):
        raise TypeError(
            f"register_report_sections returned {type(result).__name__}; expected "
            "(name, dict), a list of them, or None"
        )
    pairs = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"expected a (name, dict) pair, got {item!r:.80}")
        name, data = item
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"section name must be a non-empty string, got {name!r:.80}")
        if not isinstance(data, dict):
            raise TypeError(f"section {name!r}: data must be a dict, got {type(data).__name__}")
        safe = to_jsonable_python(data)
        ensure_json_safe({name: safe})
        pairs.append((name, safe))
    return pairs


def plugin_sections(
    plugins: PluginSet, report_date: date, taken: set[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Call every `register_report_sections` implementation, each on its own.

    Returns `(sections, errors)`. An implementation that raises (or returns a bad
    shape) gets `{"error": "..."}` as a section under its plugin's name; errors
    maps the failing plugin or section to the message. Sections whose name is
    already taken are left out and reported in errors.
    """
    sections: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for outcome in plugins.call_each("register_report_sections", report_date=report_date):
        plugin = outcome.plugin
        try:
            if outcome.error is not None:
                raise outcome.error
            pairs = _pairs(outcome.result)
        except Exception as exc:
            message = short_error(exc)
            log.error(
                "report_section_failed",
                plugin=plugin,
                report_date=report_date.isoformat(),
                error=message,
            )
            errors[plugin] = message
            if plugin not in taken and plugin not in sections:
                sections[plugin] = {"error": message}
            continue
        for name, data in pairs:
            if name in taken or name in sections:
                message = f"section name {name!r} is already taken; rename it"
                log.error("report_section_duplicate", plugin=plugin, section=name)
                errors[f"{plugin}:{name}"] = message
                continue
            sections[name] = data
    return sections, errors
