"""The `schedules` default plugin: when a beat entry is due, late, and what ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
import pytest
from celery.schedules import crontab
from click.testing import CliRunner

from banktasks_testing import fake_plugin
from core import task
from core.default_plugins.schedules import (
    HEADER,
    evaluate,
    key,
    next_due,
)

DAY = datetime(2024, 6, 1, tzinfo=UTC)
DAILY = {"task": "reports.generate_daily_reports", "schedule": crontab(minute="0", hour="0")}
GRACE = 1800


@task(queue="probe")
def ok_task(n: int = 0) -> dict[str, int]:
    """Succeeds."""
    return {"n": n}


@task(queue="probe")
def boom() -> None:
    """Fails for good (a ValueError no retry policy lists)."""
    raise ValueError("the ledger is on fire")


def probe_plugin() -> tuple[str, Any]:
    """`probe`: two tasks and two beat entries, every minute and daily at midnight."""
    from core import Schedule

    return "probe", fake_plugin(
        "probe",
        register_tasks=lambda: [ok_task, boom],
        register_schedule=lambda settings: [
            Schedule("probe-ok", ok_task, every=60, kwargs={"n": 1}),
            Schedule("probe-boom", boom, cron="0 0 * * *"),
        ],
    )


def at(hours: float = 0, days: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hours)


def test_next_due_of_a_crontab_and_of_an_interval() -> None:
    assert next_due(DAILY["schedule"], at(10.1)) == at(days=1)
    assert next_due(DAILY["schedule"], at(0) + timedelta(seconds=5)) == at(days=1)
    assert next_due(crontab(minute="*/15"), at(10.25)) == at(10.5)
    assert next_due(timedelta(seconds=90), at(1)) == at(1) + timedelta(seconds=90)
    assert next_due(object(), at(1)) is None


def test_a_daily_entry_is_late_at_half_past_midnight_without_a_success() -> None:
    state = {"first_seen": at(-14).isoformat(), "last_success": at(0.001).isoformat()}
    # yesterday's run succeeded; today's is due at 00:00 of the next day
    assert not evaluate("daily", DAILY, state, at(24.5), GRACE).late  # 00:30:00 on the dot
    late = evaluate("daily", DAILY, state, at(24.51), GRACE)
    assert late.late and late.status == "late" and late.due == at(days=1)
    assert late.next_due == at(days=2)
    succeeded = {**state, "last_success": at(24.1).isoformat()}
    assert not evaluate("daily", DAILY, succeeded, at(24.5), GRACE).late


def test_an_entry_that_never_ran_is_late_from_when_tracking_began() -> None:
    state = {"first_seen": at(10).isoformat()}
    assert not evaluate("daily", DAILY, state, at(23), GRACE).late  # not due yet
    status = evaluate("daily", DAILY, state, at(24.51), GRACE)
    assert status.late and status.last_success is None and status.last_run is None
    assert not evaluate("daily", DAILY, {}, at(24.51), GRACE).late  # untracked: from now


def test_an_interval_entry_is_late_after_its_period_plus_grace() -> None:
    entry = {"task": "probe.ok_task", "schedule": timedelta(seconds=60)}
    state = {"last_success": at(1).isoformat(), "last_run": at(1).isoformat()}
    assert not evaluate("x", entry, state, at(1) + timedelta(seconds=70), 10).late
    assert evaluate("x", entry, state, at(1) + timedelta(seconds=71), 10).late


def test_a_failed_last_run_is_failing_until_it_is_late() -> None:
    state = {
        "first_seen": at(-1).isoformat(),
        "last_success": at(0.01).isoformat(),
        "last_run": at(24).isoformat(),
        "last_failure": at(24.01).isoformat(),
        "last_status": "failed",
        "last_error": "ValueError: no",
    }
    assert evaluate("daily", DAILY, state, at(24.2), GRACE).status == "failing"
    assert evaluate("daily", DAILY, state, at(24.6), GRACE).status == "late"


def test_each_beat_entry_carries_a_header_naming_it(make_app: Any) -> None:
    app = make_app(probe_plugin(), banktasks_disable=["delivery"])
    schedule = app.conf.beat_schedule
    assert schedule["probe-ok"]["options"]["headers"] == {HEADER: "probe-ok"}
    assert schedule["probe-boom"]["options"]["headers"] == {HEADER: "probe-boom"}


def state_of(app: Any, entry: str) -> dict[str, str]:
    raw = app.redis_client().hgetall(key(entry))
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_runs_are_recorded_per_entry_and_a_manual_run_does_not_count(make_app: Any) -> None:
    app = make_app("health", probe_plugin(), banktasks_disable=["delivery"])
    app.tasks["probe.ok_task"].apply(kwargs={"n": 5})  # not from beat: not recorded
    assert state_of(app, "probe-ok") == {}
    app.tasks["probe.ok_task"].apply(kwargs={"n": 1}, headers={HEADER: "probe-ok"})
    ok = state_of(app, "probe-ok")
    assert ok["last_status"] == "succeeded" and ok["last_success"] >= ok["last_run"]
    app.tasks["probe.boom"].apply(headers={HEADER: "probe-boom"})
    failed = state_of(app, "probe-boom")
    assert failed["last_status"] == "failed" and "last_success" not in failed
    assert failed["last_error"] == "ValueError: the ledger is on fire"
    # a beat message without the header (sent before it existed): task name + arguments
    app.tasks["probe.boom"].apply(headers={"celery_beat_task": True})
    assert state_of(app, "probe-boom")["last_task_id"] != failed["last_task_id"]


def health(app: Any, now: datetime) -> dict[str, Any]:
    from core.default_plugins.schedules import MissedSchedulesCheck

    class Ctx:
        pass

    ctx = Ctx()
    ctx.app, ctx.now = app, now  # type: ignore[attr-defined]
    ctx.settings = app.runtime.settings_for("schedules")  # type: ignore[attr-defined]
    return MissedSchedulesCheck().run(ctx)


def test_the_check_degrades_when_an_entry_misses_its_due_time(make_app: Any) -> None:
    app = make_app(
        probe_plugin(),
        plugin_settings={"schedules": {"grace_seconds": 600}},
        banktasks_disable=["delivery"],
    )
    now = datetime.now(UTC)
    assert health(app, now)["status"] == "ok"  # tracking begins: nothing due yet
    app.tasks["probe.ok_task"].apply(kwargs={"n": 1}, headers={HEADER: "probe-ok"})
    later = now + timedelta(minutes=5)
    assert health(app, later)["status"] == "ok"
    result = health(app, now + timedelta(minutes=12))  # success + 60 s + 600 s passed
    assert result["status"] == "degraded" and result["value"] == 1 and result["threshold"] == 600
    assert result["detail"].startswith("probe-ok (probe.ok_task): last success ")
    app.tasks["probe.boom"].apply(headers={HEADER: "probe-boom"})
    result = health(app, now + timedelta(days=1, minutes=11))
    assert result["value"] == 2
    assert "probe-boom (probe.boom): never succeeded" in result["detail"]
    assert "last run failed: ValueError: the ledger is on fire" in result["detail"]


def test_the_check_comes_to_health_through_its_hook(make_app: Any) -> None:
    app = make_app("health", probe_plugin(), banktasks_disable=["delivery"])
    report = app.tasks["health.system_health_check"].apply().get()
    assert report["checks"]["missed_schedules"]["status"] == "ok"
    assert report["checks"]["missed_schedules"]["threshold"] == 1800  # the default grace
    assert "3 beat entries, none late" in report["checks"]["missed_schedules"]["detail"]


def test_grace_is_a_setting(make_app: Any) -> None:
    with pytest.raises(Exception, match="SCHEDULES_GRACE_SECONDS=-1"):
        make_app(plugin_settings={"schedules": {"grace_seconds": -1}})


def invoke(app: Any, *args: str) -> Any:
    group = click.Group("banktasks")
    app.runtime.hook.register_commands(cli=group)
    app.set_current()
    return CliRunner().invoke(group, ["schedules", *args])


def test_banktasks_schedules_lists_each_entry(make_app: Any) -> None:
    app = make_app(probe_plugin(), banktasks_disable=["delivery"])
    app.tasks["probe.ok_task"].apply(kwargs={"n": 1}, headers={HEADER: "probe-ok"})
    result = invoke(app)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "ENTRY", "TASK", "SCHEDULE", "LAST", "RUN", "LAST", "SUCCESS", "NEXT", "DUE", "STATUS"
    ]  # fmt: skip
    boom, ok = lines[1], lines[2]
    assert boom.startswith("probe-boom") and "cron 0 0 * * *" in boom
    assert boom.split()[-1] == "ok" and boom.count("never") == 2
    assert ok.startswith("probe-ok") and "every 60s" in ok and "never" not in ok
    rows = {row["entry"]: row for row in __import__("json").loads(invoke(app, "--json").output)}
    assert rows["probe-ok"]["last_status"] == "succeeded"
    assert rows["probe-boom"]["next_due"].endswith("T00:00:00+00:00")
    assert rows["probe-ok"]["task"] == "probe.ok_task" and rows["probe-ok"]["status"] == "ok"
