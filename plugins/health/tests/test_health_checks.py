"""Tests of the health checks, the runner and the task (in-process)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from banktasks_testing import (
    assert_not_scheduled,
    assert_retry_policy,
    assert_schedule,
    fake_plugin,
    free_port,
)
from core import ConfigError, create_app, current, load_settings, session_scope
from core.models import User
from plugins.health import CheckContext, CheckResult, HealthCheck, run_checks, worst

from .helpers import (
    BUILTIN,
    EVERY_APP,
    NOW,
    SCHEDULE_ENTRY,
    TASK,
    Fixed,
    Raises,
    add_pending,
    checks_plugin,
)


def test_health_all_ok_on_a_fresh_database(app: Any) -> None:
    report = run_checks(app)
    assert report["status"] == "ok"
    assert set(report["checks"]) == EVERY_APP
    for check in report["checks"].values():
        assert check["status"] == "ok"
        assert set(check) == {"status", "detail", "value", "threshold", "duration_ms"}
        assert check["duration_ms"] >= 0
    assert report["checks"]["pending_transactions"]["value"] == 0
    assert report["checks"]["pending_transactions"]["threshold"] == 24
    assert report["checks"]["database"]["detail"].startswith("sqlite answered SELECT 1")
    assert datetime.fromisoformat(report["checked_at"]).tzinfo is not None


@pytest.mark.parametrize(
    ("age", "status", "count"),
    [
        (timedelta(hours=24), "ok", 0),  # exactly at the age: not older
        (timedelta(hours=24, microseconds=1), "degraded", 1),  # just over
        (timedelta(hours=24, microseconds=-1), "ok", 0),  # just under
        (timedelta(days=9), "degraded", 1),
    ],
)
def test_health_pending_age_boundary(app: Any, age: timedelta, status: str, count: int) -> None:
    add_pending(app, NOW - age)
    check = run_checks(app, now=NOW)["checks"]["pending_transactions"]
    assert (check["status"], check["value"], check["threshold"]) == (status, count, 24)


def test_health_pending_counts_only_old_pending(app: Any) -> None:
    for hours in (25, 30, 100):
        add_pending(app, NOW - timedelta(hours=hours))
    add_pending(app, NOW - timedelta(hours=100), status="completed")
    add_pending(app, NOW - timedelta(hours=100), status="failed")
    add_pending(app, NOW - timedelta(hours=1))
    report = run_checks(app, now=NOW)
    check = report["checks"]["pending_transactions"]
    assert report["status"] == "degraded"
    assert (check["status"], check["value"]) == ("degraded", 3)
    assert "3 pending transaction(s) older than 24h" in check["detail"]
    assert "4d 4h" in check["detail"]


@pytest.mark.parametrize("how", ["env", "plugin_settings"])
def test_health_pending_threshold_setting(
    health_app_with: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        monkeypatch.setenv("HEALTH_PENDING_MAX_AGE_HOURS", "2")
        app = health_app_with()
    else:
        app = health_app_with(plugin_settings={"health": {"pending_max_age_hours": 2}})
    add_pending(app, NOW - timedelta(hours=2, seconds=1))
    check = run_checks(app, now=NOW)["checks"]["pending_transactions"]
    assert (check["status"], check["value"], check["threshold"]) == ("degraded", 1, 2)


@pytest.mark.parametrize(
    ("name", "value"),
    [("HEALTH_PENDING_MAX_AGE_HOURS", "0"), ("HEALTH_CHECK_TIMEOUT_SECONDS", "-1")],
)
def test_health_bad_settings_stop_start_up(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        make_app("health")


def test_health_a_check_that_raises_is_down_and_others_still_report(
    health_app_with: Any,
) -> None:
    app = health_app_with(checks_plugin(Raises()))
    report = run_checks(app)
    assert report["status"] == "down"
    assert report["checks"]["explodes"]["status"] == "down"
    assert report["checks"]["explodes"]["detail"] == "RuntimeError: disk controller on fire"
    assert {n: c["status"] for n, c in report["checks"].items() if n in BUILTIN} == {
        n: "ok" for n in BUILTIN
    }


def test_health_a_hanging_check_is_down_by_timeout(health_app_with: Any) -> None:
    release = threading.Event()

    class Hangs:
        name = "hangs"

        def run(self, ctx: CheckContext) -> CheckResult:
            release.wait(30)
            return CheckResult("ok", "woke up")

    app = health_app_with(checks_plugin(Hangs()))
    try:
        started = time.monotonic()
        report = run_checks(app, timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert elapsed < 3
    hung = report["checks"]["hangs"]
    assert (hung["status"], hung["detail"], hung["threshold"]) == (
        "down",
        "timed out after 0.5 s",
        0.5,
    )
    assert report["status"] == "down"
    assert all(report["checks"][n]["status"] == "ok" for n in BUILTIN)


def test_health_timeout_setting_is_used(
    health_app_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTH_CHECK_TIMEOUT_SECONDS", "0.3")
    release = threading.Event()

    class Slow:
        name = "slow"

        def run(self, ctx: CheckContext) -> CheckResult:
            assert ctx.timeout == 0.3
            release.wait(10)
            return CheckResult("ok")

    app = health_app_with(checks_plugin(Slow()))
    try:
        report = run_checks(app)
    finally:
        release.set()
    assert report["checks"]["slow"]["detail"] == "timed out after 0.3 s"


@pytest.mark.parametrize(
    ("statuses", "overall"),
    [
        ([], "ok"),
        (["ok"], "ok"),
        (["ok", "degraded"], "degraded"),
        (["degraded", "ok", "degraded"], "degraded"),
        (["ok", "down", "degraded"], "down"),
        (["down"], "down"),
    ],
)
def test_health_worst_of(statuses: list[str], overall: str) -> None:
    assert worst(statuses) == overall


@pytest.mark.parametrize(
    ("extra", "overall"),
    [(["ok"], "ok"), (["degraded", "ok"], "degraded"), (["degraded", "down"], "down")],
)
def test_health_overall_is_the_worst_check(
    health_app_with: Any, extra: list[str], overall: str
) -> None:
    checks = [Fixed(f"extra{i}", status) for i, status in enumerate(extra)]
    app = health_app_with(checks_plugin(*checks))
    report = run_checks(app)
    assert report["status"] == overall
    assert [report["checks"][f"extra{i}"]["status"] for i in range(len(extra))] == extra


def test_health_broker_down(make_app: Any) -> None:
    app = make_app("health", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    report = run_checks(app)
    assert time.monotonic() - started < 5
    broker = report["checks"]["broker"]
    assert broker["status"] == "down"
    assert "unreachable" in broker["detail"] and "ConnectionError" in broker["detail"]
    assert "REDIS_URL is unset" not in broker["detail"]  # no own broker to start
    assert report["status"] == "down"
    assert report["checks"]["database"]["status"] == "ok"


def test_health_own_broker_down_gives_a_hint(make_app: Any) -> None:
    app = make_app("health")  # REDIS_URL unset: the app runs its own broker (not started)
    assert app.broker is not None
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    broker = run_checks(app)["checks"]["broker"]
    assert broker["status"] == "down"
    assert "REDIS_URL is unset and the app's own broker is not running" in broker["detail"]
    assert "`banktasks broker start`" in broker["detail"]


def test_health_database_down(live_redis_url: str) -> None:
    dead = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing"
    settings = load_settings(database_url=dead, redis_url=live_redis_url)
    app = create_app(settings, plugins=["health"])  # not make_app: no tables to create
    report = run_checks(app, timeout=4)
    assert report["checks"]["database"]["status"] == "down"
    assert "OperationalError" in report["checks"]["database"]["detail"]
    assert report["checks"]["pending_transactions"]["status"] == "down"
    assert report["checks"]["broker"]["status"] == "ok"
    assert report["status"] == "down"


def test_health_plugin_check_through_the_hook_can_use_the_core(health_app_with: Any) -> None:
    seen: list[bool] = []

    class Unresolved:
        name = "acme_unresolved"

        def run(self, ctx: Any) -> dict[str, Any]:
            seen.append(current() is ctx.app.runtime)
            with session_scope() as s:
                users = s.query(User).count()
            detail = f"{users} users"
            return {"status": "degraded", "detail": detail, "value": users, "threshold": 0}

    app = health_app_with(checks_plugin(Unresolved()))
    assert isinstance(Unresolved(), HealthCheck)
    add_pending(app, NOW)
    report = run_checks(app, now=NOW)
    assert seen == [True]
    assert report["checks"]["acme_unresolved"] == {
        "status": "degraded",
        "detail": "1 users",
        "value": 1,
        "threshold": 0,
        "duration_ms": report["checks"]["acme_unresolved"]["duration_ms"],
    }
    assert report["status"] == "degraded"


def test_health_broken_registrations_are_reported_not_fatal(health_app_with: Any) -> None:
    def fails() -> list[Any]:
        raise ImportError("optional dependency missing")

    class NotACheck:
        def __repr__(self) -> str:
            return "<NotACheck>"

    class ReturnsWrong:
        name = "wrong"

        def run(self, ctx: CheckContext) -> Any:
            return "fine"

    app = health_app_with(
        ("badplug", fake_plugin("badplug", register_health_checks=fails)),
        ("notalist", fake_plugin("notalist", register_health_checks=lambda: 42)),
        checks_plugin(NotACheck(), ReturnsWrong(), Fixed("database", "ok"), name="dup"),
    )
    report = run_checks(app)
    checks = report["checks"]
    assert checks["badplug:register_health_checks"]["status"] == "down"
    assert (
        "ImportError: optional dependency missing"
        in checks["badplug:register_health_checks"]["detail"]
    )
    assert checks["notalist:register_health_checks"]["status"] == "down"
    assert (
        "returned 42; expected a list of checks"
        in (checks["notalist:register_health_checks"]["detail"])
    )
    assert checks["dup:NotACheck"]["status"] == "down"
    assert "<NotACheck> is not a HealthCheck" in checks["dup:NotACheck"]["detail"]
    assert (
        checks["wrong"]["status"] == "down"
        and "expected a CheckResult" in checks["wrong"]["detail"]
    )
    assert checks["database@dup"]["status"] == "down"
    assert "already registered by plugin 'health'" in checks["database@dup"]["detail"]
    assert checks["database"]["status"] == "ok"
    assert checks["database"]["detail"].startswith("sqlite answered SELECT 1")  # health's won
    assert report["status"] == "down"


def test_health_check_result_refuses_unknown_status() -> None:
    with pytest.raises(ValueError, match="expected one of ok, degraded, down"):
        CheckResult("fine", "?")  # type: ignore[arg-type]


def test_health_task_schedule_queue_and_no_retry(app: Any) -> None:
    assert_schedule(app, SCHEDULE_ENTRY, task=TASK, cron="*/30 * * * *")
    options = app.conf.beat_schedule[SCHEDULE_ENTRY]["options"]
    assert options["expires"] == 1500  # (the `schedules` default plugin adds a header)
    assert set(options) <= {"expires", "headers"}
    assert_retry_policy(app, TASK, max_retries=0, retry_on=())
    celery_task = app.tasks[TASK]
    assert app.conf.task_routes[TASK] == {"queue": "health"}
    assert celery_task.acks_late is True and celery_task.reject_on_worker_lost is True
    assert celery_task.max_retries == 0 and not celery_task.autoretry_for
    assert app.runtime.tasks[TASK].example_kwargs() == {}


def test_health_schedule_can_be_switched_off(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTH_SCHEDULE", "off")
    app = make_app("health")
    assert_not_scheduled(app, SCHEDULE_ENTRY)


def test_health_task_returns_the_json_summary(app: Any) -> None:
    add_pending(app, datetime.now(UTC) - timedelta(days=3))
    result = app.tasks[TASK].apply().get()
    assert result["status"] == "degraded"
    assert result["checks"]["pending_transactions"]["value"] == 1
    assert isinstance(result["checked_at"], str)


@pytest.mark.postgres
def test_health_on_postgresql(health_app_with: Any, pg_database_url: str) -> None:
    app = health_app_with(database_url=pg_database_url)
    report = run_checks(app, now=NOW)
    assert report["status"] == "ok"
    assert report["checks"]["database"]["detail"].startswith("postgresql answered SELECT 1")
    add_pending(app, NOW - timedelta(hours=24))
    add_pending(app, NOW - timedelta(hours=24, microseconds=1))
    check = run_checks(app, now=NOW)["checks"]["pending_transactions"]
    assert (check["status"], check["value"]) == ("degraded", 1)
