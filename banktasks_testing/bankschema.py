"""A bank's own schema, shaped like a Django banking app's, for tests and benches of
`DATA_MAPPING`: `auth_user`, `banking_account`, `banking_transaction` with decimal
amounts, timestamps and upper-case kind and status values.

`create_bank_schema(engine)` makes the tables, `copy_from_native(native, bank)` fills
them with the rows of banktasks' own tables (same ids, same money, same moments),
and `BANK_MAPPING` is the `DATA_MAPPING` that reads them as the core models: the
same data seen both ways must give the same alerts, report totals and export bytes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    select,
)

from core.models import Account, Transaction, User

metadata = MetaData()

auth_user = Table(
    "auth_user",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(150), unique=True, nullable=False),
    Column("email", String(254), nullable=False),
    Column("first_name", String(150), nullable=False),
    Column("last_name", String(150), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("date_joined", DateTime(timezone=True), nullable=False),
)

banking_account = Table(
    "banking_account",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("owner_id", Integer, ForeignKey("auth_user.id"), nullable=False, index=True),
    Column("number", String(34), unique=True, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("balance", Numeric(14, 2), nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
)

banking_transaction = Table(
    "banking_transaction",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("banking_account.id"), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("transaction_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("channel", String(16), nullable=True),
    Column("counterparty", String(200), nullable=True),
    Column("description", String(500), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("banking_tra_account_created_idx", "account_id", "created_at"),
)

KINDS = {kind.upper(): kind for kind in ("deposit", "withdrawal", "transfer", "payment", "fee")}
STATUSES = {s.upper(): s for s in ("pending", "completed", "failed", "reversed")}
CHANNELS = {"CASH": "cash", "CARD": "card", "WIRE": "wire", "ACH": "ach", "BOOK": "internal"}

BANK_MAPPING: dict[str, Any] = {
    "amounts": "decimal",
    "times": "datetime",
    "users": {
        "table": "auth_user",
        "columns": {"full_name": ["first_name", "last_name"], "created_at": "date_joined"},
    },
    "accounts": {
        "table": "banking_account",
        "columns": {"user_id": "owner_id", "created_at": "opened_at"},
        "values": {"status": {"ACTIVE": "active", "FROZEN": "frozen", "CLOSED": "closed"}},
    },
    "transactions": {
        "table": "banking_transaction",
        "columns": {"kind": "transaction_type"},
        "values": {"kind": KINDS, "status": STATUSES, "channel": CHANNELS},
    },
}
"""The DATA_MAPPING of this schema (`DATA_MAPPING=json.dumps(BANK_MAPPING)`)."""

_BANK_CHANNEL = {value: stored for stored, value in CHANNELS.items()}


def create_bank_schema(engine: Engine) -> None:
    """Create the bank's tables (and indexes) in the database behind `engine`."""
    metadata.create_all(engine)


def _batches(engine: Engine, query: Any, size: int) -> Any:
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=size).execute(query)
        yield from result.partitions(size)


def copy_from_native(native: Engine, bank: Engine, batch: int = 20_000) -> dict[str, int]:
    """Copy banktasks' users, accounts and transactions into the bank's tables, keeping ids,
    exact amounts and moments; returns the rows copied per table."""
    counts = {"users": 0, "accounts": 0, "transactions": 0}
    for rows in _batches(native, select(User.__table__), batch):
        values = []
        for row in rows:
            first, _, last = (row.full_name or "").partition(" ")
            values.append(
                {
                    "id": row.id,
                    "username": f"user{row.id}",
                    "email": row.email,
                    "first_name": first,
                    "last_name": last,
                    "is_active": row.is_active,
                    "date_joined": row.created_at,
                }
            )
        _insert(bank, auth_user, values)
        counts["users"] += len(values)
    for rows in _batches(native, select(Account.__table__), batch):
        values = [
            {
                "id": row.id,
                "owner_id": row.user_id,
                "number": row.number,
                "currency": row.currency,
                "balance": row.balance_minor,
                "status": row.status.upper(),
                "opened_at": row.created_at,
            }
            for row in rows
        ]
        _insert(bank, banking_account, values)
        counts["accounts"] += len(values)
    for rows in _batches(native, select(Transaction.__table__), batch):
        values = [
            {
                "id": row.id,
                "account_id": row.account_id,
                "amount": row.amount_minor,
                "currency": row.currency,
                "transaction_type": str(row.kind).upper(),
                "status": str(row.status).upper(),
                "channel": _BANK_CHANNEL.get(row.channel),
                "counterparty": row.counterparty,
                "description": row.description or "",
                "created_at": row.created_at,
                "updated_at": row.updated_at,
            }
            for row in rows
        ]
        _insert(bank, banking_transaction, values)
        counts["transactions"] += len(values)
    return counts


def _insert(engine: Engine, table: Table, values: list[dict[str, Any]]) -> None:
    if values:
        with engine.begin() as conn:
            conn.execute(table.insert(), values)


def table_digest(engine: Engine) -> dict[str, tuple[int, int]]:
    """Per bank table: (row count, hash of every row), to prove a run changed nothing."""
    digest = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(select(table).order_by(table.c.id)).all()
            digest[table.name] = (len(rows), hash(tuple(tuple(row) for row in rows)))
    return digest
