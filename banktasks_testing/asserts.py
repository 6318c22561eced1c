"""Assertions about how a plugin wires its tasks: retry policy and beat schedule.

They look at the task as Celery will run it (the bound task in an app), not only
at the `@task` declaration, so a wrong hook or a setting that overrides the
schedule shows up here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab

from core.schedule import parse_cron


def assert_retry_policy(
    app: Any,
    task_name: str,
    *,
    max_retries: int,
    retry_on: tuple[type[BaseException], ...],
    backoff: int | None = None,
    backoff_max: int | None = None,
) -> None:
    """The bound task `task_name` retries exactly on `retry_on`, `max_retries` times."""
    assert task_name in app.tasks, (
        f"{task_name} is not registered; have: {sorted(app.runtime.tasks)}"
    )
    task = app.tasks[task_name]
    assert task.max_retries == max_retries, f"{task_name}: max_retries={task.max_retries}"
    got = set(task.autoretry_for or ())
    assert got == set(retry_on), f"{task_name}: retries on {sorted(e.__name__ for e in got)}"
    if backoff is not None:
        assert task.retry_backoff == backoff, f"{task_name}: retry_backoff={task.retry_backoff}"
    if backoff_max is not None:
        assert task.retry_backoff_max == backoff_max, (
            f"{task_name}: retry_backoff_max={task.retry_backoff_max}"
        )


def assert_schedule(
    app: Any,
    entry: str,
    *,
    task: str,
    cron: str | None = None,
    every: float | timedelta | None = None,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Beat entry `entry` sends `task` on `cron` (five fields, UTC) or `every` seconds."""
    schedule = app.conf.beat_schedule
    assert entry in schedule, f"no beat entry {entry!r}; entries: {sorted(schedule)}"
    found = schedule[entry]
    assert found["task"] == task, f"{entry}: sends {found['task']}, not {task}"
    if cron is not None:
        expected = parse_cron(cron, entry)
        assert isinstance(found["schedule"], crontab) and found["schedule"] == expected, (
            f"{entry}: runs on {found['schedule']}, not {cron!r}"
        )
    if every is not None:
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
        assert found["schedule"] == timedelta(seconds=seconds), (
            f"{entry}: runs every {found['schedule']}, not {seconds}s"
        )
    if kwargs is not None:
        assert found["kwargs"] == kwargs, f"{entry}: kwargs {found['kwargs']}"


def assert_not_scheduled(app: Any, entry: str) -> None:
    """No beat entry `entry` (e.g. switched off with `<PLUGIN>_SCHEDULE=off`)."""
    assert entry not in app.conf.beat_schedule, f"{entry} is scheduled"
