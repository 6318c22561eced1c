"""Every task message says when it was sent (SENT_AT_HEADER): queue wait and backlog age."""

from __future__ import annotations

import json
import time
from typing import Any

from banktasks_testing import fake_plugin
from core import SENT_AT_HEADER, task


def ping(n: int) -> int:
    """Echo."""
    return n


def _headers(app: Any, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw)["headers"] for raw in app.redis_client().lrange(queue, 0, -1)]


def test_single_bulk_and_by_name_sends_carry_the_time_they_were_sent(make_app: Any) -> None:
    app = make_app(("stamp", fake_plugin("stamp", register_tasks=lambda: [task(ping)])))
    before = time.time()
    app.tasks["stamp.ping"].delay(1)
    app.send_task("stamp.ping", kwargs={"n": 2})
    app.tasks["stamp.ping"].delay_many([{"n": 3}, {"n": 4}, {"n": 5}], batch_size=2)
    after = time.time()
    headers = _headers(app, "stamp")
    assert len(headers) == 5
    for header in headers:
        assert before <= header[SENT_AT_HEADER] <= after


def test_other_apps_messages_are_left_alone(make_app: Any) -> None:
    from celery import Celery

    make_app(("stamp", fake_plugin("stamp", register_tasks=lambda: [task(ping)])))
    plain = Celery("plain", broker="memory://", set_as_current=False)
    seen: list[dict[str, Any]] = []
    from celery import signals

    def spy(headers: Any = None, **_: Any) -> None:
        seen.append(dict(headers or {}))

    signals.before_task_publish.connect(spy)
    try:
        plain.send_task("elsewhere.task", kwargs={})
    finally:
        signals.before_task_publish.disconnect(spy)
    assert seen and SENT_AT_HEADER not in seen[0]
