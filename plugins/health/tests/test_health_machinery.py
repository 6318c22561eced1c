"""Checks of the machinery itself: `queue_backlog` (health's) and `dead_letters` (from
the `deadletters` default plugin, through `register_health_checks`), on a real Valkey."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from banktasks_testing import fake_plugin
from core import task
from core.db import utcnow
from plugins.health import run_checks
from plugins.health.backlog import SENT_AT_HEADER, queue_lists, waiting_since

from .helpers import TASK

LIMITS = {"health": {"queue_max_age_seconds": 1, "queue_max_length": 3}}


@task(queue="probe")
def explode() -> None:
    """Fails for good."""
    raise ValueError("no")


def set_head_headers(app: Any, queue: str, **headers: Any) -> None:
    """Rewrite the headers of the oldest message of `queue` (None removes one): the core
    stamps `banktasks_sent_at` on every send, so an old or missing stamp is made here."""
    client = app.redis_client()
    message = json.loads(client.lindex(queue, -1))
    message["headers"].update(headers)
    message["headers"] = {k: v for k, v in message["headers"].items() if v is not None}
    client.lset(queue, -1, json.dumps(message))


def backlog(app: Any) -> dict[str, Any]:
    return dict(run_checks(app)["checks"]["queue_backlog"])


def test_queue_lists_include_kombu_priority_lists(app: Any) -> None:
    lists = queue_lists(app)
    steps = app.conf.broker_transport_options.get("priority_steps") or [0, 3, 6, 9]
    assert lists["health"] == ["health", *(f"health\x06\x16{n}" for n in steps if n)]
    assert len(lists["health"]) > 1 and "celery" in lists


def test_waiting_since_reads_the_sent_at_header_and_a_later_eta() -> None:
    assert waiting_since({SENT_AT_HEADER: 100.5}) == 100.5
    assert waiting_since({SENT_AT_HEADER: 100.5, "eta": "1970-01-01T00:05:00+00:00"}) == 300
    assert waiting_since({"eta": None, "id": "x"}) is None
    assert waiting_since({SENT_AT_HEADER: True}) is None


def test_backlog_ok_when_the_queues_are_empty(health_app_with: Any) -> None:
    app = health_app_with(plugin_settings=LIMITS)
    check = backlog(app)
    assert check["status"] == "ok", check
    assert check["value"] == 0 and check["threshold"] == 1


def test_a_message_stamped_long_ago_makes_the_backlog_degraded(health_app_with: Any) -> None:
    app = health_app_with(plugin_settings=LIMITS)
    app.tasks[TASK].delay()
    assert backlog(app)["status"] == "ok"  # stamped when sent: fresh
    set_head_headers(app, "health", **{SENT_AT_HEADER: time.time() - 30})
    check = backlog(app)
    assert check["status"] == "degraded", check
    assert 29 <= check["value"] <= 40
    assert "queue 'health': 1 message(s)" in check["detail"]
    assert app.redis_client().llen("health") == 1  # read, not consumed


def test_an_unstamped_message_is_aged_from_when_a_check_first_saw_it(
    health_app_with: Any,
) -> None:
    app = health_app_with(plugin_settings=LIMITS)
    app.tasks[TASK].delay()
    set_head_headers(app, "health", **{SENT_AT_HEADER: None})  # e.g. from another sender
    assert backlog(app)["status"] == "ok"  # first sight: age 0
    time.sleep(1.6)
    check = backlog(app)
    assert check["status"] == "degraded", check
    assert check["value"] >= 1
    app.redis_client().delete("health")
    assert backlog(app)["status"] == "ok"


def test_a_long_queue_makes_the_backlog_degraded(health_app_with: Any) -> None:
    app = health_app_with(plugin_settings={"health": {"queue_max_length": 3}})
    for _ in range(4):
        app.tasks[TASK].delay()
    check = backlog(app)
    assert check["status"] == "degraded"
    assert "queue 'health': 4 message(s) (max 3)" in check["detail"]


def test_a_non_json_head_is_tracked_by_its_hash(health_app_with: Any) -> None:
    app = health_app_with(plugin_settings=LIMITS)
    app.redis_client().lpush("celery", b"\xff not json")
    assert backlog(app)["status"] == "ok"
    stored = app.redis_client().hget("banktasks:health:backlog", "celery")
    assert json.loads(stored)["id"].startswith("sha256:")


def probe() -> tuple[str, Any]:
    return "probe", fake_plugin("probe", register_tasks=lambda: [explode])


def test_a_new_dead_letter_makes_the_dead_letters_check_degraded(health_app_with: Any) -> None:
    app = health_app_with(probe())
    assert run_checks(app)["checks"]["dead_letters"]["status"] == "ok"
    app.tasks["probe.explode"].apply()  # fails for good: the deadletters plugin stores it
    check = run_checks(app)["checks"]["dead_letters"]
    assert check["status"] == "degraded", check
    assert (check["value"], check["threshold"]) == (1, 0)
    assert "probe.explode: 1" in check["detail"]
    later = run_checks(app, now=utcnow() + timedelta(minutes=61))  # out of the window
    assert later["checks"]["dead_letters"]["status"] == "ok"


def test_the_dead_letters_threshold_and_window_are_settings(health_app_with: Any) -> None:
    settings = {"deadletters": {"health_max_new": 1, "health_window_minutes": 5}}
    app = health_app_with(probe(), plugin_settings=settings)
    app.tasks["probe.explode"].apply()
    check = run_checks(app)["checks"]["dead_letters"]
    assert check["status"] == "ok" and check["value"] == 1 and check["threshold"] == 1
    assert "in the last 5 min" in check["detail"]
    app.tasks["probe.explode"].apply()
    assert run_checks(app)["checks"]["dead_letters"]["status"] == "degraded"
