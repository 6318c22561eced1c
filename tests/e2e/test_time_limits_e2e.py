"""Time limits in a real worker: the soft limit stops a task cleanly (recorded, not
retried), the hard limit kills its pool process (recorded, the pool goes on), a slow run
is logged."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from banktasks_testing import WorkerProcess, fake_plugin, wait_for
from core import RetryPolicy, task
from core.default_plugins.deadletters import TIME_LIMIT, FailedTask

pytestmark = pytest.mark.e2e

RETRY_EVERYTHING = RetryPolicy(max_retries=3, backoff=1, backoff_max=1, retry_on=(Exception,))


def nap(seconds: float) -> str:
    """Sleep; stopped at the soft limit of 1 s."""
    time.sleep(seconds)
    return "rested"


def stubborn(seconds: float) -> str:
    """Sleep and ignore the soft limit: only the hard one (2 s) ends it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.05)
    return "done"


def _plugin() -> Any:
    limits = {"soft_time_limit": 1, "time_limit": 2, "retry": RETRY_EVERYTHING}
    return fake_plugin(
        "limits", register_tasks=lambda: [task(nap, **limits), task(stubborn, **limits)]
    )


def _worker_app() -> Any:
    from core import create_app, load_settings

    return create_app(load_settings(), plugins=[_plugin()])


worker_app = _worker_app() if os.environ.get("TIME_LIMITS_E2E_WORKER") else None


@pytest.fixture
def limits(e2e: Any) -> Any:
    from core import create_app, load_settings
    from core.celery import reset_default_app

    reset_default_app()
    app = create_app(load_settings(), plugins=[_plugin()])
    app.runtime.db.create_all()
    worker = WorkerProcess(
        {**os.environ, **e2e.env, "TIME_LIMITS_E2E_WORKER": "1"},
        e2e.tmp / "limits-worker.log",
        queues=["limits"],
        concurrency=1,
    )
    worker.cmd[worker.cmd.index("core")] = "tests.e2e.test_time_limits_e2e:worker_app"
    e2e.workers.append(worker)  # stopped at teardown
    worker.start()
    return app, worker


def _dead_letter(app: Any, task_id: str) -> FailedTask | None:
    with app.runtime.db.session() as session:
        return session.scalars(select(FailedTask).where(FailedTask.task_id == task_id)).first()


def test_the_soft_limit_stops_a_task_cleanly_once_and_records_why(limits: Any) -> None:
    app, worker = limits
    started = time.monotonic()
    result = app.tasks["limits.nap"].delay(seconds=30)
    wait_for(result.ready, 30, "the task to end")
    assert time.monotonic() - started < 10, "stopped at 1 s, not after its 30 s"
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "TaskTimeLimitExceeded"
    assert "stopped at its soft time limit of 1 s" in str(result.result)
    assert "BANKTASKS_TIME_LIMITS=limits.nap=" in str(result.result)
    row = wait_for(lambda: _dead_letter(app, result.id), 10, "the dead letter")
    assert (row.reason, row.attempts, row.error_type) == (TIME_LIMIT, 1, "TaskTimeLimitExceeded")
    assert "task.time_limit" in worker.log()
    assert worker.log().count(f"[{result.id}] retry") == 0, "never retried"


def test_the_hard_limit_kills_the_run_and_the_pool_goes_on(limits: Any) -> None:
    app, worker = limits
    pids = set(worker.children())
    result = app.tasks["limits.stubborn"].delay(seconds=30)
    wait_for(result.ready, 30, "the task to be killed")
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "TimeLimitExceeded"
    wait_for(lambda: "Hard time limit (2" in worker.log(), 10, "the worker's error line")
    row = wait_for(lambda: _dead_letter(app, result.id), 10, "the dead letter")
    assert (row.reason, row.error_type) == (TIME_LIMIT, "TimeLimitExceeded")
    after = app.tasks["limits.nap"].delay(seconds=0.01)
    assert after.get(timeout=30) == "rested"
    assert set(worker.children()) != pids, "the killed pool process was replaced"


def test_a_run_over_half_its_soft_limit_is_logged_as_slow(limits: Any) -> None:
    app, worker = limits
    assert app.tasks["limits.nap"].delay(seconds=0.7).get(timeout=30) == "rested"
    assert app.tasks["limits.nap"].delay(seconds=0.05).get(timeout=30) == "rested"
    lines = [line for line in worker.log().splitlines() if "task.slow" in line]
    assert len(lines) == 1, lines
    assert "soft_time_limit=1" in lines[0] and "task_name=limits.nap" in lines[0]
