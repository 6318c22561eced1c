"""The rows of an export, streamed from the database with constant memory.

One Core SELECT over the user's transactions in `[start, end)` (epoch micros),
run with `yield_per` (a server-side cursor on PostgreSQL, `fetchmany` batches on
SQLite). Stored values are read raw — integer cents and integer microseconds —
and formatted here, which is several times faster than going through Decimal
and datetime type processing for every row.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Connection, String, select, type_coerce

from core.models import Account, Transaction

YIELD_PER = 5000
COLUMNS = [
    "transaction_id",
    "created_at",
    "account",
    "kind",
    "status",
    "amount",
    "currency",
    "counterparty",
    "description",
]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_cents(cents: int) -> str:
    """Integer cents → exact decimal string: 1000001 → "10000.01", -5 → "-0.05"."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def format_micros(micros: int) -> str:
    """Epoch microseconds → ISO 8601 UTC with microseconds: "2024-01-31T23:59:59.999999+00:00"."""
    return (_EPOCH + timedelta(microseconds=micros)).isoformat(timespec="microseconds")


def mask_account(number: str | None) -> str:
    """Only the last four characters of an account number: "****1234"."""
    return "****" + (number or "")[-4:]


def export_query(user_id: int, start_us: int, end_us: int) -> Any:
    """The SELECT of a user's transactions with `start_us <= created_at < end_us`, in order."""
    t = Transaction.__table__.c
    a = Account.__table__.c
    created = type_coerce(t.created_at, BigInteger)
    return (
        select(
            t.id,
            created,
            type_coerce(a.number, String),
            type_coerce(t.kind, String),
            type_coerce(t.status, String),
            type_coerce(t.amount_minor, BigInteger),
            t.currency,
            t.counterparty,
            t.description,
        )
        .select_from(Transaction.__table__.join(Account.__table__, t.account_id == a.id))
        .where(a.user_id == user_id, created >= start_us, created < end_us)
        .order_by(created, t.id)
    )


def stream_rows(
    conn: Connection, user_id: int, start_us: int, end_us: int
) -> Generator[tuple, None, None]:
    """Yield export rows (see COLUMNS) one at a time, fetched in batches of YIELD_PER."""
    result = conn.execution_options(yield_per=YIELD_PER).execute(
        export_query(user_id, start_us, end_us)
    )
    try:
        for tid, created, number, kind, status, cents, currency, counterparty, note in result:
            yield (
                tid,
                format_micros(created),
                mask_account(number),
                kind,
                status,
                format_cents(cents),
                currency,
                counterparty,
                note,
            )
    finally:
        result.close()
