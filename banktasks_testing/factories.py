"""Test data: factories for users, accounts and transactions, and the seed data API.

Plain functions over a SQLAlchemy session: each fills in what you leave out
(unique e-mail and account number, `created_at` now), adds the row, flushes it
so its `id` is set, and returns it.

    with app.runtime.db.session() as s:
        account = make_account(s)                       # and its user
        make_transaction(s, account, amount="10000.01")  # a deposit, completed, now
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from core.db import Database, utcnow
from core.default_plugins.seed import SeedSummary, seed
from core.models import Account, Transaction, TransactionKind, TransactionStatus, User

_numbers = itertools.count(1)


def make_user(session: Session, **fields: Any) -> User:
    """A `User` (e-mail `kit-userN@example.com`, active), added and flushed.

    The e-mail differs from the seed data's `userN@example.com`, so both can be used.
    """
    n = next(_numbers)
    values: dict[str, Any] = {"email": f"kit-user{n}@example.com", "full_name": f"Test User {n}"}
    values.update(fields)
    user = User(**values)
    session.add(user)
    session.flush()
    return user


def make_account(session: Session, user: User | None = None, **fields: Any) -> Account:
    """An `Account` of `user` (a new user if None): USD, active, balance 0.00."""
    owner = user or make_user(session)
    values: dict[str, Any] = {"user_id": owner.id, "number": f"TEST{next(_numbers):010d}"}
    values.update(fields)
    account = Account(**values)
    session.add(account)
    session.flush()
    return account


def make_transaction(
    session: Session,
    account: Account | None = None,
    amount: Decimal | str | int = "100.00",
    kind: TransactionKind | str = TransactionKind.payment,
    status: TransactionStatus | str = TransactionStatus.completed,
    at: datetime | None = None,
    **fields: Any,
) -> Transaction:
    """A `Transaction` on `account` (a new one if None) of `amount` at `at` (default now)."""
    tx = _transaction(account or make_account(session), amount, kind, status, at, **fields)
    session.add(tx)
    session.flush()
    return tx


def make_transactions(
    session: Session, account: Account, rows: Iterable[dict[str, Any]]
) -> list[Transaction]:
    """Many transactions on `account` with one flush: each row holds `make_transaction`'s
    keyword arguments (`{"amount": "9500.00", "kind": "deposit", "at": moment}`)."""
    txs = [_transaction(account, **row) for row in rows]
    session.add_all(txs)
    session.flush()
    return txs


def _transaction(
    account: Account,
    amount: Decimal | str | int = "100.00",
    kind: TransactionKind | str = TransactionKind.payment,
    status: TransactionStatus | str = TransactionStatus.completed,
    at: datetime | None = None,
    **fields: Any,
) -> Transaction:
    moment = at or utcnow()
    return Transaction(
        account_id=account.id,
        amount=Decimal(str(amount)),
        kind=TransactionKind(kind),
        status=TransactionStatus(status),
        created_at=moment,
        updated_at=moment,
        **fields,
    )


def seed_data(db: Database, **options: Any) -> SeedSummary:
    """Deterministic synthetic data with planted fraud patterns (what `banktasks db seed`
    writes): `seed_data(app.runtime.db, users=50, transactions=3000, seed_value=42)`.
    The summary lists what was planted (large transactions, structuring accounts, …)."""
    return seed(db, **options)
