"""How names are matched: one normalisation, in Python (for the list) and in SQL (for
transactions), and the set-based JOIN of a window's transactions against the list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.models import Transaction
from sqlalchemy import Select, func, select

from banktasks_sanctions.models import SanctionsEntry

IGNORED = (" ", ".", ",", "-", "'")
"""Characters a name is compared without: `ACME Holdings, Ltd.` matches `acme-holdings ltd`."""


def normalise_name(name: str) -> str:
    """The form a name is compared in: lower case, without spaces, dots, commas, hyphens
    and apostrophes (`" ACME Holdings, Ltd. "` → `"acmeholdingsltd"`)."""
    for char in IGNORED:
        name = name.replace(char, "")
    return name.lower()


def normalised_sql(column: Any) -> Any:
    """The same normalisation as an SQL expression (nested `replace()` and `lower()`)."""
    expression = column
    for char in IGNORED:
        expression = func.replace(expression, char, "")
    return func.lower(expression)


def matches(since: datetime, until: datetime) -> Select[Any]:
    """Transactions created in `[since, until)` whose counterparty is on the list: one JOIN
    in the database (the list's unique index on `normalised`), no loop over rows."""
    return (
        select(
            Transaction.id,
            Transaction.account_id,
            Transaction.counterparty,
            Transaction.amount,
            Transaction.currency,
            Transaction.created_at,
            SanctionsEntry.name.label("listed_name"),
            SanctionsEntry.program,
        )
        .join(SanctionsEntry, SanctionsEntry.normalised == normalised_sql(Transaction.counterparty))
        .where(Transaction.created_at >= since, Transaction.created_at < until)
        .order_by(Transaction.id)
    )
