"""The seed's export example, verbatim, through a real worker over a real broker."""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.models import Account, Transaction, User


@pytest.mark.e2e
def test_export_seed_example_through_a_real_worker(e2e: Any) -> None:
    e2e.set(BANKTASKS_PLUGINS="export")
    app = e2e.app()
    with app.runtime.db.session() as s:
        s.add(User(id=1, email="user1@example.com", full_name="Ada Lovelace"))
        s.add(Account(id=1, user_id=1, number="409876543210"))
        s.flush()
        for day in (1, 15, 31):
            s.add(
                Transaction(
                    account_id=1,
                    amount=Decimal("1234.56"),
                    kind="payment",
                    counterparty="=evil()",
                    created_at=datetime(2024, 1, day, 23, 59, 59, 999999, tzinfo=UTC),
                )
            )
        s.add(
            Transaction(
                account_id=1,
                amount=Decimal("1.00"),
                kind="fee",
                created_at=datetime(2024, 2, 1, tzinfo=UTC),
            )
        )
    e2e.start_worker()

    from core.tasks import export_transaction_data

    result = export_transaction_data.delay(
        user_id=1, start_date="2024-01-01", end_date="2024-01-31", export_format="csv"
    )
    summary = result.get(timeout=60)
    assert summary["rows"] == 3 and summary["format"] == "csv"
    path = Path(summary["path"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == summary["sha256"]
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    assert [r[5] for r in rows] == ["1234.56"] * 3
    assert {r[2] for r in rows} == {"****3210"}
    assert {r[7] for r in rows} == {"'=evil()"}
