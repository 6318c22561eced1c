"""Issue 15, findings 4, 5, 7 (task pages) and 9 (submission side): every path that submits a
task passes the same checks, a forged `retries` header is refused before Celery uses it,
a message has a size limit, and what task events and the result backend keep is redacted.

Each test failed before the fix: forged headers ran the task, `apply_async(retries=1)`,
`app.send_task` and Flower's send-task API went past the submission limit, a 2 MB
submission was queued, kwargs were kept in results and shown raw in `kwargsrepr`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from sqlalchemy import select

from banktasks_testing import fake_plugin, free_port, http_status, send_unchecked, wait_for
from core import SubmissionRateLimited, TaskArgumentError, task
from core.default_plugins.deadletters import INVALID, FailedTask, rejected_key
from core.default_plugins.seed import seed

EXPORT = "export.export_transaction_data"
HEALTH = "health.system_health_check"
FRAUD = "fraud.analyze_fraud_patterns"
NOTIFY = "notifications.send_email_notification"
EXPORT_KWARGS = {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-31"}
FLOWER_LOGIN = "ops:Flower-Secret-2026"


def queued(app: Any, queue: str) -> list[dict[str, Any]]:
    """The envelopes waiting in `queue` on the broker (oldest last)."""
    return [json.loads(raw) for raw in app.redis_client().lrange(queue, 0, -1)]


def dead_letter(app: Any, task_id: str) -> FailedTask | None:
    """The dead letter of a task, or of its message if the worker set it aside unread."""
    keys = (task_id, rejected_key(task_id))
    with app.runtime.db.session() as session:
        return session.scalars(select(FailedTask).where(FailedTask.task_id.in_(keys))).first()


@pytest.mark.e2e
@pytest.mark.parametrize("forged", [-30, 2**70, "7"], ids=["negative", "huge", "not-a-number"])
def test_a_forged_retries_header_is_refused_before_it_is_used(e2e: Any, forged: Any) -> None:
    e2e.set(BANKTASKS_PLUGINS="health")
    app = e2e.app()
    e2e.start_worker()
    started = time.monotonic()
    result = send_unchecked(app, HEALTH, kwargs={}, retries=forged)
    row = wait_for(lambda: dead_letter(app, result.id), 30, "the dead letter")
    assert time.monotonic() - started < 15, "the refusal must not cost a backoff computation"
    assert "retries" in row.error and row.task_name in (HEALTH, "unknown")
    assert row.reason in (INVALID, "malformed message")
    assert result.state != "SUCCESS", "the task did not run"
    assert app.tasks[HEALTH].delay().get(timeout=30)["status"], "the worker still serves"


def test_a_caller_cannot_set_retries(make_app: Any) -> None:
    app = make_app("export")
    with pytest.raises(TaskArgumentError, match=r"retries=1.*set by Celery"):
        app.tasks[EXPORT].apply_async(kwargs=EXPORT_KWARGS, retries=1)
    with pytest.raises(TaskArgumentError, match="set by Celery"):
        app.send_task(EXPORT, kwargs=EXPORT_KWARGS, retries=3)
    assert queued(app, "export") == []


@pytest.mark.parametrize("task_id", ["x" * 65, "two words", "", "nul\x00id"])
def test_a_task_id_a_worker_would_refuse_is_refused_at_once(make_app: Any, task_id: str) -> None:
    app = make_app("export")
    with pytest.raises(TaskArgumentError, match="task_id"):
        app.tasks[EXPORT].apply_async(kwargs=EXPORT_KWARGS, task_id=task_id)
    assert queued(app, "export") == []
    app.tasks[EXPORT].apply_async(kwargs=EXPORT_KWARGS, task_id="x" * 64)
    assert len(queued(app, "export")) == 1


def test_the_submission_limit_holds_for_every_path(make_app: Any) -> None:
    app = make_app("export", plugin_settings={"export": {"submit_limit_per_minute": 3}})
    export = app.tasks[EXPORT]
    for _ in range(3):
        export.delay(**EXPORT_KWARGS)
    with pytest.raises(SubmissionRateLimited):
        export.delay(**EXPORT_KWARGS)
    with pytest.raises(TaskArgumentError):  # a caller's "retry" is refused outright
        export.apply_async(kwargs=EXPORT_KWARGS, retries=1)
    with pytest.raises(SubmissionRateLimited):
        app.send_task(EXPORT, kwargs=EXPORT_KWARGS)
    with pytest.raises(SubmissionRateLimited):
        export.s(**EXPORT_KWARGS).apply_async()
    assert len(queued(app, "export")) == 3
    other = {**EXPORT_KWARGS, "user_id": 2}  # the limit is per user
    app.send_task(EXPORT, kwargs=other)
    assert len(queued(app, "export")) == 4


def test_send_task_validates_like_delay(make_app: Any) -> None:
    app = make_app("export")
    with pytest.raises(TaskArgumentError, match="start_date"):
        app.send_task(EXPORT, kwargs={**EXPORT_KWARGS, "start_date": "last week"})
    with pytest.raises(TaskArgumentError, match="unexpected keyword argument"):
        app.send_task(EXPORT, kwargs={**EXPORT_KWARGS, "path": "/etc"})
    assert queued(app, "export") == []
    app.send_task("some.other_task", kwargs={"anything": 1})  # not ours: plain Celery
    assert len(queued(app, "celery")) == 1


def test_an_oversized_submission_is_refused_before_anything_is_stored(make_app: Any) -> None:
    app = make_app("notifications", banktasks_max_message_bytes=64 * 1024)
    big = "x" * (64 * 1024)
    client = app.redis_client()
    keys_before = set(client.keys())
    for send in (
        lambda: app.tasks[NOTIFY].delay(user_id=1, subject="Hi", message=big),
        lambda: app.send_task(NOTIFY, kwargs={"user_id": 1, "subject": "Hi", "message": big}),
    ):
        with pytest.raises(TaskArgumentError, match="BANKTASKS_MAX_MESSAGE_BYTES=65536"):
            send()
    assert set(client.keys()) == keys_before, "nothing reached the broker"
    app.tasks[NOTIFY].delay(user_id=1, subject="Hi", message="x" * 60_000)  # below: sent
    assert len(queued(app, "notifications")) == 1


def store(payload: str) -> int:
    """A task of a test plugin that takes any string."""
    return len(payload)


def test_the_default_limit_refuses_megabytes(make_app: Any) -> None:
    plugin = fake_plugin("bulky", register_tasks=lambda: [task(store)])
    app = make_app(plugin)
    assert app.runtime.settings.banktasks_max_message_bytes == 1_048_576
    with pytest.raises(TaskArgumentError, match="more than BANKTASKS_MAX_MESSAGE_BYTES"):
        app.tasks["bulky.store"].delay(payload="x" * 1_048_577)
    assert queued(app, "bulky") == []
    app.tasks["bulky.store"].delay(payload="x" * 1_000_000)
    assert len(queued(app, "bulky")) == 1


def test_task_events_show_redacted_arguments(make_app: Any) -> None:
    """`argsrepr`/`kwargsrepr` are what task events carry, so what Flower's task pages show."""
    app = make_app("notifications", "export")
    app.tasks[NOTIFY].delay(
        user_id=1, subject="For jane.doe@example.com", message="account 4012345678901234"
    )
    app.tasks[EXPORT].delay(**EXPORT_KWARGS)
    (email,) = queued(app, "notifications")
    shown = email["headers"]["kwargsrepr"]
    assert "jane.doe@example.com" not in shown and "4012345678901234" not in shown
    assert "j***@example.com" in shown and "****1234" in shown
    assert email["headers"]["argsrepr"] == "[]"
    (export,) = queued(app, "export")
    assert "'start_date': '2024-01-01'" in export["headers"]["kwargsrepr"]


@pytest.mark.e2e
def test_results_keep_no_arguments_unless_asked(e2e: Any) -> None:
    e2e.set(BANKTASKS_PLUGINS="fraud")
    app = e2e.app()

    def stored_meta() -> dict[str, Any]:
        result = app.tasks[FRAUD].delay(since="2024-01-01T00:00:00+00:00")
        result.get(timeout=30)
        return dict(json.loads(app.redis_client().get(f"celery-task-meta-{result.id}")))

    worker = e2e.start_worker()
    stored = stored_meta()
    assert (stored["status"], stored["name"], stored["retries"]) == ("SUCCESS", FRAUD, 0)
    assert "kwargs" not in stored and "args" not in stored
    worker.stop()
    e2e.set(BANKTASKS_KEEP_TASK_ARGUMENTS="true")
    e2e.start_worker()
    assert "since" in stored_meta()["kwargs"], "the setting keeps them"


@pytest.mark.e2e
def test_flower_send_task_api_passes_the_same_checks(e2e: Any) -> None:
    e2e.set(
        BANKTASKS_PLUGINS="export",
        FLOWER_BASIC_AUTH=FLOWER_LOGIN,
        EXPORT_SUBMIT_LIMIT_PER_MINUTE="2",
    )
    app = e2e.app()
    seed(app.runtime.db, users=2, transactions=20)
    port = free_port()
    log = (e2e.tmp / "flower.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "flower", f"--port={port}"],
        env={**os.environ, **e2e.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def post(path: str, body: dict[str, Any]) -> int:
        return http_status(base + path, FLOWER_LOGIN, data=body)

    def up() -> bool:
        return post(f"/api/task/send-task/{EXPORT}", {"kwargs": EXPORT_KWARGS}) == 200

    try:
        wait_for(up, 40, "flower's API")  # the first submission (of two allowed)
        assert post(f"/api/task/send-task/{EXPORT}", {"kwargs": EXPORT_KWARGS}) == 200
        assert post(f"/api/task/send-task/{EXPORT}", {"kwargs": EXPORT_KWARGS}) >= 400
        bad = {**EXPORT_KWARGS, "user_id": 2, "export_format": "../x"}
        assert post(f"/api/task/send-task/{EXPORT}", {"kwargs": bad}) >= 400
        forged = {"kwargs": {**EXPORT_KWARGS, "user_id": 2}, "retries": 5}
        assert post(f"/api/task/send-task/{EXPORT}", forged) >= 400
        assert len(queued(app, "export")) == 2
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
