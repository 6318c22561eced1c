"""Reading the bank's rows by id: account owners and numbers, customers' e-mails,
counterparties, transaction times.

They are read where they live (`current().data`: banktasks' own tables, or a bank's seen
through DATA_MAPPING, perhaps in another database), in queries of their own, never
joined with the fraud plugin's tables: one query per ID_CHUNK ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import BigInteger, select, type_coerce
from sqlalchemy.orm import Session

from core import current, data_scope
from core.logging import mask_number

ID_CHUNK = 500
"""Ids per IN list (and rows per INSERT of the callers that chunk their own)."""


def chunks(ids: Iterable[int], size: int = ID_CHUNK) -> Iterator[list[int]]:
    """The distinct ids, sorted, in lists of at most `size`."""
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def by_id(session: Session, table: Any, value: Any, ids: Iterable[int], *where: Any) -> dict:
    """`value` (a column or expression of `table`, a `current().data` table) of the rows with
    those ids (and `where`), read in `data_scope(session)`; rows not found are left out."""
    found: dict[int, Any] = {}
    with data_scope(session) as data:
        for chunk in chunks(ids):
            query = select(table.c.id, value).where(table.c.id.in_(chunk), *where)
            found.update({int(row_id): item for row_id, item in data.execute(query)})
    return found


def account_owners(session: Session, account_ids: Iterable[int]) -> dict[int, int]:
    """Account id → user id (the customer)."""
    accounts = current().data.accounts
    return by_id(session, accounts, accounts.c.user_id, account_ids)


def account_numbers(session: Session, account_ids: Iterable[int]) -> dict[int, str]:
    """Account id → account number (to be shown masked only: `masked`)."""
    accounts = current().data.accounts
    return by_id(session, accounts, accounts.c.number, account_ids)


def customer_emails(session: Session, user_ids: Iterable[int]) -> dict[int, str]:
    """User id → e-mail."""
    users = current().data.users
    return by_id(session, users, users.c.email, user_ids)


def counterparties(session: Session, transaction_ids: Iterable[int]) -> dict[int, str]:
    """Transaction id → counterparty; transactions without one are left out."""
    tx = current().data.transactions
    return by_id(session, tx, tx.c.counterparty, transaction_ids, tx.c.counterparty.is_not(None))


def transaction_times(session: Session, transaction_ids: Iterable[int]) -> dict[int, int]:
    """Transaction id → created_at as epoch microseconds."""
    tx = current().data.transactions
    at = type_coerce(tx.c.created_at, BigInteger)
    return {tid: int(micros) for tid, micros in by_id(session, tx, at, transaction_ids).items()}


def masked(number: str | None) -> str:
    """`core.logging.mask_number` (`****1234`); `-` without a number, and a number of four
    characters or fewer is hidden whole."""
    if not number:
        return "-"
    return mask_number(number) if len(number) > 4 else "****"
