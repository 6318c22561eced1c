"""`db seed`: deterministic data with exactly the planted patterns."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from core.db import Database
from core.default_plugins.seed import seed
from core.models import Transaction

NOW = datetime(2024, 2, 1, tzinfo=UTC)


def _snapshot(db: Database):
    with db.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT id, account_id, amount_minor, kind, status, created_at FROM transactions "
            "ORDER BY id"
        ).fetchall()


def test_seed_is_deterministic(tmp_path):
    first, second = Database(f"sqlite:///{tmp_path}/a.db"), Database(f"sqlite:///{tmp_path}/b.db")
    s1 = seed(first, users=20, transactions=3000, seed_value=7, now=NOW)
    s2 = seed(second, users=20, transactions=3000, seed_value=7, now=NOW)
    assert s1 == s2
    assert _snapshot(first) == _snapshot(second)


def test_seed_plants_patterns(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/a.db")
    summary = seed(db, users=50, transactions=5000, seed_value=1, now=NOW)
    assert summary.transactions == 5000
    assert len(summary.large_transactions) >= 4  # incl. 10000.01; 10000.00 is not above
    assert len(summary.structuring_accounts) >= 2
    assert len(summary.velocity_accounts) >= 2
    assert len(summary.old_pending) >= 3
    with db.session() as session:
        above = session.scalar(select(func.count()).where(Transaction.amount > 10000))
        exactly = session.scalar(select(func.count()).where(Transaction.amount == 10000))
    assert above == len(summary.large_transactions)
    assert exactly == 1


def test_seed_refuses_a_database_with_users(tmp_path):
    import pytest

    db = Database(f"sqlite:///{tmp_path}/a.db")
    seed(db, users=2, transactions=10, now=NOW)
    with pytest.raises(ValueError, match="already holds 2 users"):
        seed(db, users=2, transactions=10, now=NOW)
