"""`delay_many` end to end: a real worker runs every task of a bulk send exactly once.

This module is also the worker's app (`celery -A tests.e2e.test_bulk_e2e:worker_app`,
built when BULK_E2E_WORKER=1): a plugin with one task that counts its runs in Redis.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import pytest

from banktasks_testing import WorkerProcess, fake_plugin, wait_for
from core import task

RUNS = "bulk-e2e:runs"
N = 2000


@cache
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(os.environ["REDIS_URL"])


def double(i: int) -> int:
    """Count this run of item `i` (to prove each runs once) and return 2·i."""
    _redis().hincrby(RUNS, str(i), 1)
    return 2 * i


def _plugin() -> Any:
    return fake_plugin("bulke2e", register_tasks=lambda: [task(double)])


def _worker_app() -> Any:
    from core import create_app, load_settings

    return create_app(load_settings(), plugins=[_plugin()])


worker_app = _worker_app() if os.environ.get("BULK_E2E_WORKER") else None


@pytest.mark.e2e
def test_every_task_of_a_bulk_send_runs_exactly_once(e2e: Any) -> None:
    from core import create_app, load_settings
    from core.celery import reset_default_app

    reset_default_app()
    app = create_app(load_settings(), plugins=[_plugin()])
    app.runtime.db.create_all()
    ids = app.tasks["bulke2e.double"].delay_many(({"i": i} for i in range(N)), batch_size=300)
    assert len(ids) == N == app.redis_client().llen("bulke2e")

    worker = WorkerProcess(
        {**os.environ, **e2e.env, "BULK_E2E_WORKER": "1"},
        e2e.tmp / "bulk-worker.log",
        concurrency=2,
    )
    worker.cmd[worker.cmd.index("core")] = "tests.e2e.test_bulk_e2e:worker_app"
    e2e.workers.append(worker)  # stopped at teardown
    worker.start()

    client = app.redis_client()
    wait_for(lambda: client.hlen(RUNS) == N, 120, "every task run", 0.2)
    results = [app.AsyncResult(task_id).get(timeout=60) for task_id in ids]
    assert results == [2 * i for i in range(N)]
    runs = client.hgetall(RUNS)
    assert {int(k) for k in runs} == set(range(N))
    assert set(runs.values()) == {b"1"}, "a task ran more than once"
