"""`system_health_check` through a real worker over a real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.models import Account, Transaction, User


@pytest.mark.e2e
def test_health_through_a_real_worker(e2e: Any) -> None:
    e2e.set(BANKTASKS_PLUGINS="health")
    app = e2e.app()
    e2e.start_worker()

    from core.tasks import system_health_check

    report = system_health_check.delay().get(timeout=60)
    assert report["status"] == "ok", report
    assert set(report["checks"]) == {"broker", "database", "pending_transactions"}
    assert all(c["status"] == "ok" for c in report["checks"].values())
    assert isinstance(report["checked_at"], str)

    with app.runtime.db.session() as s:
        s.add(User(id=1, email="user1@example.com", full_name="Ada"))
        s.add(Account(id=1, user_id=1, number="400000000001"))
        s.flush()
        s.add(
            Transaction(
                account_id=1,
                amount=Decimal("1.00"),
                kind="payment",
                status="pending",
                created_at=datetime.now(UTC) - timedelta(hours=30),
            )
        )
    report = app.tasks["health.system_health_check"].delay().get(timeout=60)
    assert report["status"] == "degraded"
    assert report["checks"]["pending_transactions"]["value"] == 1
    assert report["checks"]["pending_transactions"]["threshold"] == 24
