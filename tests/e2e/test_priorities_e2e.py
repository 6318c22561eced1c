"""Priorities on the real broker: an urgent task overtakes a backlog of low-priority ones."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import pytest

from banktasks_testing import WorkerProcess, fake_plugin, wait_for
from core import task

pytestmark = pytest.mark.e2e

ORDER = "priorities-e2e:order"
BACKLOG = 30
SEP = "\x06\x16"  # kombu's separator of a queue's priority lists


@cache
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(os.environ["REDIS_URL"])


def record(tag: str) -> str:
    """Note the order in which tasks ran."""
    _redis().rpush(ORDER, tag)
    return tag


def _plugin() -> Any:
    def background(tag: str) -> str:
        """A task that may wait: priority 9 unless a call says otherwise."""
        return record(tag)

    return fake_plugin("prio", register_tasks=lambda: [task(record), task(background, priority=9)])


def _worker_app() -> Any:
    from core import create_app, load_settings

    return create_app(load_settings(), plugins=[_plugin()])


worker_app = _worker_app() if os.environ.get("PRIORITIES_E2E_WORKER") else None


def test_an_urgent_task_overtakes_a_backlog_of_low_priority_ones(e2e: Any) -> None:
    from core import create_app, load_settings
    from core.celery import reset_default_app

    reset_default_app()
    app = create_app(load_settings(), plugins=[_plugin()])
    app.runtime.db.create_all()
    client = app.redis_client()
    client.delete(ORDER)
    # a mass send first: the task's own priority (9) ...
    app.tasks["prio.background"].delay_many(
        ({"tag": f"bg-{i:02}"} for i in range(BACKLOG)), batch_size=7
    )
    # ... then an ordinary task (priority 0) and one that a call gives priority 5
    app.tasks["prio.record"].apply_async(kwargs={"tag": "middle"}, priority=5)
    app.tasks["prio.record"].delay(tag="urgent")
    assert client.llen(f"prio{SEP}9") == BACKLOG
    assert client.llen(f"prio{SEP}5") == 1
    assert client.llen("prio") == 1

    worker = WorkerProcess(
        {**os.environ, **e2e.env, "PRIORITIES_E2E_WORKER": "1"},
        e2e.tmp / "priorities-worker.log",
        queues=["prio"],
        concurrency=1,
    )
    worker.cmd[worker.cmd.index("core")] = "tests.e2e.test_priorities_e2e:worker_app"
    e2e.workers.append(worker)  # stopped at teardown
    worker.start()
    wait_for(lambda: client.llen(ORDER) == BACKLOG + 2, 60, "every task to run")
    order = [tag.decode() for tag in client.lrange(ORDER, 0, -1)]
    assert order[:2] == ["urgent", "middle"]
    assert order[2:] == [f"bg-{i:02}" for i in range(BACKLOG)], "the backlog keeps its order"
