"""`system_health_check` through a real worker over a real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plugins.health import system_health_check

from .helpers import EVERY_APP, TASK, add_pending


@pytest.mark.e2e
def test_health_through_a_real_worker(e2e: Any) -> None:
    e2e.set(BANKTASKS_PLUGINS="health")
    app = e2e.app()
    e2e.start_worker()

    report = system_health_check.delay().get(timeout=60)
    assert report["status"] == "ok", report
    assert set(report["checks"]) == EVERY_APP
    assert all(c["status"] == "ok" for c in report["checks"].values())
    assert isinstance(report["checked_at"], str)

    add_pending(app, datetime.now(UTC) - timedelta(hours=30))
    report = app.tasks[TASK].delay().get(timeout=60)
    assert report["status"] == "degraded"
    assert report["checks"]["pending_transactions"]["value"] == 1
    assert report["checks"]["pending_transactions"]["threshold"] == 24
