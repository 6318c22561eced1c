"""HEALTH_RESULT_CACHE_SECONDS: repeated calls share one run of the checks (off by default)."""

from __future__ import annotations

from typing import Any

from plugins.health.tests.helpers import TASK


def _report(app: Any) -> dict[str, Any]:
    return app.tasks[TASK].apply().get()


def test_off_by_default_every_call_runs_the_checks(make_app: Any) -> None:
    app = make_app("health")
    assert _report(app)["checked_at"] != _report(app)["checked_at"]


def test_with_a_cache_time_a_second_call_returns_the_same_report(make_app: Any) -> None:
    app = make_app("health", plugin_settings={"health": {"result_cache_seconds": 15}})
    first = _report(app)
    assert _report(app) == first
    [key] = app.redis_client().keys("banktasks:cache:health.system_health_check:*")
    assert 0 < app.redis_client().ttl(key) <= 15
