"""Priorities: 0 (first) to 9 (last), per task and per call; a bad one sends nothing."""

from __future__ import annotations

from typing import Any

import pytest

from banktasks_testing import fake_plugin
from core import ConfigError, TaskArgumentError, task


def ping(n: int) -> int:
    """Echo."""
    return n


def _app(make_app: Any, **options: Any) -> Any:
    return make_app(("prio", fake_plugin("prio", register_tasks=lambda: [task(ping, **options)])))


@pytest.mark.parametrize("bad", [10, -1, "high", True, 2.5])
def test_a_call_with_a_bad_priority_is_refused_and_nothing_is_sent(make_app: Any, bad: Any) -> None:
    app = _app(make_app)
    ping_task = app.tasks["prio.ping"]
    with pytest.raises(TaskArgumentError, match=r"prio\.ping: priority=.* from 0 \(runs first\)"):
        ping_task.apply_async(kwargs={"n": 1}, priority=bad)
    with pytest.raises(TaskArgumentError, match="priority="):
        app.send_task("prio.ping", kwargs={"n": 1}, priority=bad)
    with pytest.raises(TaskArgumentError, match="priority="):
        ping_task.delay_many([{"n": 1}], priority=bad)
    assert app.redis_client().keys("prio*") == []


def test_a_task_declares_its_default_priority_and_a_call_overrides_it(make_app: Any) -> None:
    app = _app(make_app, priority=7)
    assert app.conf.task_routes["prio.ping"] == {"queue": "prio", "priority": 7}
    app.tasks["prio.ping"].delay(1)
    app.tasks["prio.ping"].apply_async(kwargs={"n": 2}, priority=0)
    client = app.redis_client()
    assert client.llen("prio\x06\x167") == 1
    assert client.llen("prio") == 1


def test_a_bad_task_priority_stops_start_up(make_app: Any) -> None:
    with pytest.raises(ConfigError, match=r"plugin 'prio': @task prio\.ping: priority=12"):
        _app(make_app, priority=12)
