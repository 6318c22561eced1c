"""The outbox makes sending idempotent: one key, one message — retries and redeliveries too."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from core.db import utcnow
from plugins.notifications import (
    TemporaryFailure,
    message_id_for,
    send_admin_email,
    send_email_notification,
)
from plugins.notifications import outbox as outbox_mod
from plugins.notifications.tests.helpers import outbox_rows

TASK = "notifications.send_email_notification"


def eml_count(app: Any) -> int:
    return len(list((app.runtime.settings.var_dir / "outbox").glob("*.eml")))


def test_same_key_twice_sends_once_and_second_is_duplicate(notif_app: Any) -> None:
    app = notif_app()
    first = send_email_notification(
        user_id=1, subject="Hi", message="Body", idempotency_key="welcome:1"
    )
    second = send_email_notification(
        user_id=1, subject="Hi", message="Body", idempotency_key="welcome:1"
    )
    assert first["status"] == "sent"
    assert second["status"] == "duplicate"
    assert second["message_id"] == first["message_id"] == message_id_for("welcome:1")
    assert eml_count(app) == 1
    (row,) = outbox_rows(app)
    assert (row.idempotency_key, row.status, row.attempts) == ("caller:welcome:1", "sent", 1)
    assert row.recipient == "user1@example.com"
    assert row.sent_at is not None and row.error is None


def test_different_keys_send_separately(notif_app: Any) -> None:
    app = notif_app()
    send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="a")
    send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="b")
    assert eml_count(app) == 2
    assert [r.status for r in outbox_rows(app)] == ["sent", "sent"]


def test_message_id_is_deterministic_per_key() -> None:
    assert message_id_for("k") == message_id_for("k")
    assert message_id_for("k") != message_id_for("k2")
    assert message_id_for("k").startswith("<") and message_id_for("k").endswith("@banktasks>")
    assert len(message_id_for("k").split("@")[0]) == 33


def test_default_key_comes_from_the_celery_task_id(notif_app: Any) -> None:
    app = notif_app()
    celery_task = app.tasks[TASK]
    kwargs = {"user_id": 1, "subject": "Hi", "message": "Body"}
    first = celery_task.apply(kwargs=kwargs, task_id="task-abc").get()
    redelivered = celery_task.apply(kwargs=kwargs, task_id="task-abc").get()
    other = celery_task.apply(kwargs=kwargs, task_id="task-xyz").get()
    assert first["status"] == "sent" and first["idempotency_key"] == "task:task-abc"
    assert redelivered == {
        "status": "duplicate",
        "message_id": first["message_id"],
        "idempotency_key": "task:task-abc",
        "sent_at": redelivered["sent_at"],
    }
    assert other["status"] == "sent" and other["message_id"] != first["message_id"]
    assert eml_count(app) == 2


def test_without_a_worker_the_key_is_a_hash_of_the_arguments(notif_app: Any) -> None:
    app = notif_app()
    a = send_email_notification(user_id=1, subject="Hi", message="Body")
    b = send_email_notification(user_id=1, subject="Hi", message="Body")
    c = send_email_notification(user_id=1, subject="Hi", message="Other body")
    assert a["idempotency_key"].startswith("args:")
    assert (a["status"], b["status"], c["status"]) == ("sent", "duplicate", "sent")
    assert eml_count(app) == 2


def test_admin_and_user_keys_share_one_namespace(notif_app: Any) -> None:
    notif_app()
    send_admin_email(subject="Hi", message="Body", idempotency_key="shared")
    assert (
        send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="shared")[
            "status"
        ]
        == "duplicate"
    )


def test_a_key_leased_by_another_worker_is_not_sent_twice(notif_app: Any) -> None:
    app = notif_app()
    db = app.runtime.db
    held = outbox_mod.claim(
        db,
        outbox_mod.caller_key("busy-key"),
        kind="user",
        user_id=1,
        subject="Hi",
        lease=timedelta(seconds=120),
    )
    assert held.outcome == "claimed"
    with pytest.raises(TemporaryFailure, match="another worker is sending") as info:
        send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="busy-key")
    assert 110 <= info.value.retry_after <= 120
    assert eml_count(app) == 0
    (row,) = outbox_rows(app)
    assert (row.status, row.attempts) == ("pending", 1)


def test_an_expired_lease_is_taken_over_and_the_same_message_id_is_used(notif_app: Any) -> None:
    app = notif_app()
    db = app.runtime.db
    past = utcnow() - timedelta(hours=1)
    key = outbox_mod.caller_key("crash-key")
    lease = timedelta(seconds=60)
    crashed = outbox_mod.claim(db, key, kind="user", user_id=1, subject="Hi", lease=lease, now=past)
    result = send_email_notification(
        user_id=1, subject="Hi", message="Body", idempotency_key="crash-key"
    )
    assert result["status"] == "sent"
    assert result["message_id"] == crashed.message_id
    assert result["attempts"] == 2
    assert eml_count(app) == 1


def test_claim_boundaries_lease_ends_exactly_now(notif_app: Any) -> None:
    app = notif_app()
    db = app.runtime.db
    t0 = utcnow()
    lease = timedelta(seconds=60)
    kw: dict[str, Any] = {"kind": "user", "user_id": 1, "subject": "Hi", "lease": lease}
    assert outbox_mod.claim(db, "edge", now=t0, **kw).outcome == "claimed"
    just_before = t0 + lease - timedelta(microseconds=1)
    assert outbox_mod.claim(db, "edge", now=just_before, **kw).outcome == "busy"
    assert outbox_mod.claim(db, "edge", now=t0 + lease, **kw).outcome == "claimed"
    outbox_mod.mark_sent(db, "edge", recipient="user1@example.com", channel="file")
    assert outbox_mod.claim(db, "edge", now=t0 + 10 * lease, **kw).outcome == "sent"


def test_a_failed_key_can_be_sent_again_later(notif_app: Any) -> None:
    app = notif_app()
    db = app.runtime.db
    key = outbox_mod.caller_key("again")
    outbox_mod.claim(db, key, kind="user", user_id=1, subject="Hi", lease=timedelta(seconds=60))
    outbox_mod.mark_failed(db, key, "TemporaryFailure: gave up", final=True)
    result = send_email_notification(
        user_id=1, subject="Hi", message="Body", idempotency_key="again"
    )
    assert result["status"] == "sent" and result["attempts"] == 2
    (row,) = outbox_rows(app)
    assert (row.status, row.error) == ("sent", None)


def test_mark_failed_never_downgrades_a_sent_row(notif_app: Any) -> None:
    app = notif_app()
    send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="done")
    outbox_mod.mark_failed(app.runtime.db, outbox_mod.caller_key("done"), "late error", final=True)
    (row,) = outbox_rows(app)
    assert (row.status, row.error) == ("sent", None)


def _race(app: Any, key: str, threads: int = 6) -> list[Any]:
    """Send the same key from several threads at once; return each result or exception."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(i: int) -> None:
        app.set_current()
        barrier.wait()
        try:
            results[i] = send_email_notification(
                user_id=1, subject="Hi", message="Body", idempotency_key=key
            )["status"]
        except TemporaryFailure as exc:
            results[i] = exc

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return results


def _assert_one_send(app: Any, results: list[Any]) -> None:
    assert results.count("sent") == 1, results
    others = [r for r in results if r != "sent"]
    assert all(r == "duplicate" or isinstance(r, TemporaryFailure) for r in others), results
    assert eml_count(app) == 1
    (row,) = outbox_rows(app)
    assert row.status == "sent"


def test_concurrent_deliveries_of_one_key_send_once_sqlite(notif_app: Any) -> None:
    app = notif_app()
    _assert_one_send(app, _race(app, "race"))


@pytest.mark.postgres
def test_concurrent_deliveries_of_one_key_send_once_postgresql(
    notif_app: Any, pg_database_url: str
) -> None:
    app = notif_app(database_url=pg_database_url)
    assert app.runtime.db.dialect == "postgresql"
    _assert_one_send(app, _race(app, "race"))
    again = send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="race")
    assert again["status"] == "duplicate"
