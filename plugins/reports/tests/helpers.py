"""Row builders and lookups shared by the reports tests."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from banktasks_testing import make_transaction
from core.models import Account, Transaction, User

OLD = datetime(2020, 1, 1, tzinfo=UTC)
DAY = date(2024, 1, 31)

_numbers = itertools.count(1)


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """An aware UTC datetime on `day`."""
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=UTC)


def add_account(
    session: Any, currency: str = "USD", created_at: datetime = OLD, user_created: datetime = OLD
) -> Account:
    """A user with one account, both created long before the reported days by default."""
    n = next(_numbers)
    user = User(email=f"r{n}@example.com", full_name=f"User {n}", created_at=user_created)
    account = Account(user=user, number=f"RP{n:010d}", currency=currency, created_at=created_at)
    session.add_all([user, account])
    session.flush()
    return account


def add_tx(
    session: Any,
    account: Account,
    amount: str | Decimal,
    when: datetime,
    kind: str = "payment",
    status: str = "completed",
    currency: str | None = None,
    counterparty: str | None = None,
    description: str | None = None,
) -> Transaction:
    """One transaction row at an exact time (the testing kit's factory)."""
    return make_transaction(
        session,
        account,
        amount=amount,
        kind=kind,
        status=status,
        at=when,
        currency=currency or account.currency,
        counterparty=counterparty,
        description=description,
    )


def stored_rows(app: Any) -> list[Any]:
    """Every `reports_daily` row of the app's database."""
    from sqlalchemy import select

    from plugins.reports import StoredReport

    with app.runtime.db.session() as session:
        return list(session.execute(select(StoredReport)).scalars())


def reports_dir(app: Any) -> Any:
    """The app's REPORTS_DIR."""
    return app.runtime.settings_for("reports").reports_dir(app.runtime.settings.var_dir)
