"""Result caching through a real worker: the second identical call does not run."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import pytest

from banktasks_testing import WorkerProcess, fake_plugin
from core import task

pytestmark = pytest.mark.e2e

RUNS = "cache-e2e:runs"


@cache
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(os.environ["REDIS_URL"])


def balance_report(account_id: int) -> dict[str, Any]:
    """A read-only report; counts its runs."""
    return {"account_id": account_id, "run": _redis().incr(RUNS)}


def _plugin() -> Any:
    return fake_plugin("cachee2e", register_tasks=lambda: [task(balance_report, cache_ttl=300)])


def _worker_app() -> Any:
    from core import create_app, load_settings

    return create_app(load_settings(), plugins=[_plugin()])


worker_app = _worker_app() if os.environ.get("CACHE_E2E_WORKER") else None


def test_identical_calls_share_one_run_across_processes(e2e: Any) -> None:
    from core import create_app, load_settings
    from core.celery import reset_default_app

    reset_default_app()
    app = create_app(load_settings(), plugins=[_plugin()])
    app.runtime.db.create_all()
    app.redis_client().delete(RUNS)
    worker = WorkerProcess(
        {**os.environ, **e2e.env, "CACHE_E2E_WORKER": "1"},
        e2e.tmp / "cache-worker.log",
        queues=["cachee2e"],
        concurrency=2,
    )
    worker.cmd[worker.cmd.index("core")] = "tests.e2e.test_result_cache_e2e:worker_app"
    e2e.workers.append(worker)  # stopped at teardown
    worker.start()
    report = app.tasks["cachee2e.balance_report"]
    first = report.delay(account_id=7).get(timeout=30)
    again = [report.delay(account_id=7).get(timeout=30) for _ in range(3)]
    other = report.delay(account_id=8).get(timeout=30)
    assert first == {"account_id": 7, "run": 1}
    assert again == [first] * 3, "served from the cache, by either pool process"
    assert other == {"account_id": 8, "run": 2}
    assert int(app.redis_client().get(RUNS)) == 2
    assert worker.log().count("task.cache_hit") == 3
