"""Money is exact, time is UTC-aware, sessions commit or roll back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.db import Database, from_micros, to_micros, to_minor
from core.models import Account, Transaction, User


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'bank.db'}")
    database.create_all()
    yield database
    database.dispose()


def _account(session) -> Account:
    user = User(email="a@example.com", full_name="A")
    account = Account(user=user, number="400000000001")
    session.add_all([user, account])
    session.flush()
    return account


def test_sql_sum_of_amounts_is_exact_to_the_cent(db):
    amounts = [
        Decimal("0.10"),
        Decimal("0.20"),
        Decimal("0.30"),
        Decimal("772377509.70"),
        Decimal("0.01"),
    ] * 2000
    with db.session() as session:
        account = _account(session)
        session.add_all(
            Transaction(account_id=account.id, amount=a, kind="deposit") for a in amounts
        )
    with db.session() as session:
        total = session.scalar(select(func.sum(Transaction.amount)))
    assert isinstance(total, Decimal)
    assert total == sum(amounts)
    assert str(total) == "1544755020620.00"  # 2000 x 772377510.31


def test_sub_cent_amounts_are_refused_not_rounded():
    assert to_minor(Decimal("10000.01")) == 1_000_001
    with pytest.raises(ValueError, match="more than two decimal places"):
        to_minor(Decimal("0.005"))


def test_times_round_trip_as_aware_utc(db):
    moment = datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    other_zone = datetime(2024, 2, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as session:
        account = _account(session)
        session.add(
            Transaction(account_id=account.id, amount=Decimal(1), kind="fee", created_at=moment)
        )
        session.add(
            Transaction(account_id=account.id, amount=Decimal(2), kind="fee", created_at=other_zone)
        )
    with db.session() as session:
        stored = session.scalars(select(Transaction.created_at).order_by(Transaction.id)).all()
    assert stored[0] == moment and stored[0].tzinfo is not None
    assert stored[1] == datetime(2024, 1, 31, 23, 0, tzinfo=UTC)
    assert from_micros(to_micros(moment)) == moment


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive datetime"):
        to_micros(datetime(2024, 1, 1))


def test_session_rolls_back_on_error(db):
    with pytest.raises(RuntimeError), db.session() as session:
        _account(session)
        raise RuntimeError("boom")
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_sqlite_runs_in_wal_mode_with_foreign_keys(db):
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@pytest.mark.postgres
def test_money_and_time_on_postgresql(pg_database_url):
    database = Database(pg_database_url)
    database.create_all()
    amounts = [Decimal("0.10"), Decimal("0.20"), Decimal("99999999.99")] * 100
    with database.session() as session:
        account = _account(session)
        session.add_all(
            Transaction(account_id=account.id, amount=a, kind="deposit") for a in amounts
        )
    with database.session() as session:
        assert session.scalar(select(func.sum(Transaction.amount))) == sum(amounts)
    database.dispose()
