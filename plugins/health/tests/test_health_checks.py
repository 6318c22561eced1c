"""Tests of the health checks, the runner and the task (in-process)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import plugins.health
from core import current, hookimpl, session_scope
from core.errors import ConfigError
from core.models import Account, Transaction, User
from core.testing import free_port
from plugins.health import CheckContext, CheckResult, HealthCheck, run_checks, worst

TASK = "health.system_health_check"
BUILTIN = {"broker", "database", "pending_transactions"}
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


class ChecksPlugin:
    """A third-party plugin contributing health checks through the hook."""

    def __init__(self, *checks: Any, name: str = "acme_checks") -> None:
        self.name = name
        self.checks = list(checks)

    @hookimpl
    def register_health_checks(self) -> list[Any]:
        return self.checks


class Fixed:
    """A check that returns a fixed result."""

    def __init__(self, name: str, status: str, value: Any = None) -> None:
        self.name = name
        self.status = status
        self.value = value

    def run(self, ctx: CheckContext) -> CheckResult:
        return CheckResult(self.status, f"{self.name} is {self.status}", self.value, 1)  # type: ignore[arg-type]


class Raises:
    name = "explodes"

    def run(self, ctx: CheckContext) -> CheckResult:
        raise RuntimeError("disk controller on fire")


def add_pending(app: Any, at: datetime, status: str = "pending", account_id: int = 1) -> int:
    with app.runtime.db.session() as s:
        if s.get(User, 1) is None:
            s.add(User(id=1, email="user1@example.com", full_name="Ada"))
            s.add(Account(id=1, user_id=1, number="400000000001"))
            s.flush()
        tx = Transaction(
            account_id=account_id,
            amount=Decimal("5.00"),
            kind="payment",
            status=status,
            created_at=at,
        )
        s.add(tx)
        s.flush()
        return tx.id


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app(plugins=[plugins.health])


def test_health_all_ok_on_a_fresh_database(app: Any) -> None:
    report = run_checks(app)
    assert report["status"] == "ok"
    assert set(report["checks"]) == BUILTIN
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


def test_health_pending_threshold_setting(make_app: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("HEALTH_PENDING_MAX_AGE_HOURS", "2")
    app = make_app(plugins=[plugins.health])
    add_pending(app, NOW - timedelta(hours=2, seconds=1))
    check = run_checks(app, now=NOW)["checks"]["pending_transactions"]
    assert (check["status"], check["value"], check["threshold"]) == ("degraded", 1, 2)


@pytest.mark.parametrize(
    ("name", "value"),
    [("HEALTH_PENDING_MAX_AGE_HOURS", "0"), ("HEALTH_CHECK_TIMEOUT_SECONDS", "-1")],
)
def test_health_bad_settings_stop_start_up(
    make_app: Any, monkeypatch: Any, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        make_app(plugins=[plugins.health])


def test_health_a_check_that_raises_is_down_and_others_still_report(make_app: Any) -> None:
    app = make_app(plugins=[plugins.health, ChecksPlugin(Raises())])
    report = run_checks(app)
    assert report["status"] == "down"
    assert report["checks"]["explodes"]["status"] == "down"
    assert report["checks"]["explodes"]["detail"] == "RuntimeError: disk controller on fire"
    assert {n: c["status"] for n, c in report["checks"].items() if n in BUILTIN} == {
        n: "ok" for n in BUILTIN
    }


def test_health_a_hanging_check_is_down_by_timeout(make_app: Any) -> None:
    release = threading.Event()

    class Hangs:
        name = "hangs"

        def run(self, ctx: CheckContext) -> CheckResult:
            release.wait(30)
            return CheckResult("ok", "woke up")

    app = make_app(plugins=[plugins.health, ChecksPlugin(Hangs())])
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


def test_health_timeout_setting_is_used(make_app: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("HEALTH_CHECK_TIMEOUT_SECONDS", "0.3")
    release = threading.Event()

    class Slow:
        name = "slow"

        def run(self, ctx: CheckContext) -> CheckResult:
            assert ctx.timeout == 0.3
            release.wait(10)
            return CheckResult("ok")

    app = make_app(plugins=[plugins.health, ChecksPlugin(Slow())])
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
def test_health_overall_is_the_worst_check(make_app: Any, extra: list[str], overall: str) -> None:
    checks = [Fixed(f"extra{i}", status) for i, status in enumerate(extra)]
    app = make_app(plugins=[plugins.health, ChecksPlugin(*checks)])
    report = run_checks(app)
    assert report["status"] == overall
    assert [report["checks"][f"extra{i}"]["status"] for i in range(len(extra))] == extra


def test_health_broker_down(make_app: Any) -> None:
    app = make_app(plugins=[plugins.health], redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    report = run_checks(app)
    assert time.monotonic() - started < 5
    broker = report["checks"]["broker"]
    assert broker["status"] == "down"
    assert "unreachable" in broker["detail"] and "ConnectionError" in broker["detail"]
    assert report["status"] == "down"
    assert report["checks"]["database"]["status"] == "ok"


def test_health_database_down(valkey_url: str, bt_env: dict[str, str]) -> None:
    from core.app import create_app
    from core.settings import load_settings

    dead = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing"
    app = create_app(
        load_settings(database_url=dead, redis_url=valkey_url), plugins=[plugins.health]
    )
    report = run_checks(app, timeout=4)
    assert report["checks"]["database"]["status"] == "down"
    assert "OperationalError" in report["checks"]["database"]["detail"]
    assert report["checks"]["pending_transactions"]["status"] == "down"
    assert report["checks"]["broker"]["status"] == "ok"
    assert report["status"] == "down"


def test_health_plugin_check_through_the_hook_can_use_the_core(make_app: Any) -> None:
    seen: list[bool] = []

    class Unresolved:
        name = "acme_unresolved"

        def run(self, ctx: CheckContext) -> CheckResult:
            from plugins.health import CheckResult as Result  # the lazy import plugins use

            seen.append(current() is ctx.app.runtime)
            with session_scope() as s:
                users = s.query(User).count()
            return Result("degraded", f"{users} users", value=users, threshold=0)

    plugin = ChecksPlugin(Unresolved())
    app = make_app(plugins=[plugins.health, plugin])
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


def test_health_broken_registrations_are_reported_not_fatal(make_app: Any) -> None:
    class BadPlugin:
        name = "badplug"

        @hookimpl
        def register_health_checks(self) -> list[Any]:
            raise ImportError("optional dependency missing")

    class NotACheck:
        def __repr__(self) -> str:
            return "<NotACheck>"

    class ReturnsWrong:
        name = "wrong"

        def run(self, ctx: CheckContext) -> Any:
            return "fine"

    app = make_app(
        plugins=[
            plugins.health,
            BadPlugin(),
            ChecksPlugin(NotACheck(), ReturnsWrong(), Fixed("database", "ok"), name="dup"),
        ]
    )
    report = run_checks(app)
    checks = report["checks"]
    assert checks["badplug:register_health_checks"]["status"] == "down"
    assert (
        "ImportError: optional dependency missing"
        in checks["badplug:register_health_checks"]["detail"]
    )
    assert checks["dup:NotACheck"]["status"] == "down"
    assert (
        checks["wrong"]["status"] == "down"
        and "expected a CheckResult" in checks["wrong"]["detail"]
    )
    assert checks["database@dup"]["status"] == "down"
    assert "already registered by plugin 'health'" in checks["database@dup"]["detail"]
    assert checks["database"]["status"] == "ok"
    assert report["status"] == "down"


def test_health_check_result_refuses_unknown_status() -> None:
    with pytest.raises(ValueError, match="expected one of ok, degraded, down"):
        CheckResult("fine", "?")  # type: ignore[arg-type]


def test_health_task_schedule_queue_and_no_retry(app: Any) -> None:
    entry = app.conf.beat_schedule["system-health-check"]
    assert entry["task"] == TASK
    assert entry["schedule"].minute == set(range(0, 60, 30))
    assert entry["schedule"].hour == set(range(24))
    assert entry["options"] == {"expires": 1500}
    celery_task = app.tasks[TASK]
    assert app.conf.task_routes[TASK] == {"queue": "health"}
    assert celery_task.acks_late is True and celery_task.reject_on_worker_lost is True
    assert celery_task.max_retries == 0 and not celery_task.autoretry_for
    assert app.runtime.tasks[TASK].example_kwargs() == {}


def test_health_schedule_can_be_switched_off(make_app: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("HEALTH_SCHEDULE", "off")
    app = make_app(plugins=[plugins.health])
    assert "system-health-check" not in app.conf.beat_schedule


def test_health_task_returns_the_json_summary(app: Any) -> None:
    add_pending(app, datetime.now(UTC) - timedelta(days=3))
    result = app.tasks[TASK].apply().get()
    assert result["status"] == "degraded"
    assert result["checks"]["pending_transactions"]["value"] == 1
    assert isinstance(result["checked_at"], str)


@pytest.mark.postgres
def test_health_on_postgresql(make_app: Any, pg_database_url: str) -> None:
    app = make_app(plugins=[plugins.health], database_url=pg_database_url)
    report = run_checks(app, now=NOW)
    assert report["status"] == "ok"
    assert report["checks"]["database"]["detail"].startswith("postgresql answered SELECT 1")
    add_pending(app, NOW - timedelta(hours=24))
    add_pending(app, NOW - timedelta(hours=24, microseconds=1))
    check = run_checks(app, now=NOW)["checks"]["pending_transactions"]
    assert (check["status"], check["value"]) == ("degraded", 1)
