"""The `delivery` default plugin against a real Valkey (no worker): the ledger written with
each message, the reconciler's sweep, and transactional submission (`delay_on_commit`)
with its outbox and relay. The same paths through real workers: tests/e2e/test_delivery_e2e.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, text
from structlog.testing import capture_logs

from banktasks_testing import fake_plugin
from core import TaskArgumentError, task
from core.default_plugins.delivery import ledger
from core.default_plugins.delivery.api import status, sweep_once
from core.default_plugins.delivery.reconciler import CONFIRM_SECONDS, sweep
from core.outbox import OutboxMessage, relay

QUEUE = "ledgered"


def add(a: int, b: int) -> int:
    """A task of a test plugin."""
    return a + b


@pytest.fixture
def app(make_app: Any) -> Any:
    plugin = fake_plugin("ledgered", register_tasks=lambda: [task(add)])
    return make_app(plugin)


def queued_ids(app: Any, queue: str = QUEUE) -> list[str]:
    """The task ids waiting in `queue`, oldest first."""
    raws = reversed(app.redis_client().lrange(queue, 0, -1))
    return [json.loads(raw)["headers"]["id"] for raw in raws]


def reconcile(app: Any, now: float) -> Any:
    """One sweep with no grace period, as if run at `now`."""
    return sweep(
        app.redis_client(),
        grace=0,
        max_resends=2,
        result_key=app.backend.get_key_for_task,
        now=now,
    )


def lose(app: Any, queue: str = QUEUE) -> bytes:
    """Take the oldest message off `queue` the way a worker killed after its BRPOP does."""
    raw = app.redis_client().rpop(queue)
    assert raw is not None
    return raw


def test_every_message_is_written_to_the_ledger_with_it(app: Any) -> None:
    client = app.redis_client()
    one = app.tasks["ledgered.add"].delay(1, 2).id
    many = app.tasks["ledgered.add"].delay_many([{"a": i, "b": i} for i in range(3)])
    assert ledger.tracked(client) == 4
    queued = {json.loads(raw)["headers"]["id"]: raw for raw in client.lrange(QUEUE, 0, -1)}
    for task_id in [one, *many]:
        queue_list, payload = ledger.split_entry(client.hget(ledger.MESSAGES, task_id))
        assert queue_list == QUEUE
        assert payload.encode() == queued[task_id]  # the exact message, to send it again


def test_a_sweep_leaves_queued_held_and_running_messages_alone(app: Any) -> None:
    client = app.redis_client()
    queued = app.tasks["ledgered.add"].delay(1, 1).id
    held = app.tasks["ledgered.add"].delay(2, 2).id
    running = app.tasks["ledgered.add"].delay(3, 3).id
    # `held`: a worker took it and holds it unacknowledged (kombu's QoS.append)
    raw = client.lrange(QUEUE, 0, -1)
    by_id = {json.loads(r)["headers"]["id"]: r for r in raw}
    tag = json.loads(by_id[held])["properties"]["delivery_tag"]
    client.lrem(QUEUE, 1, by_id[held])
    client.hset("unacked", tag, json.dumps([by_id[held].decode(), "", QUEUE]))
    # `running`: taken by a worker that acknowledged it early; its state says STARTED
    client.lrem(QUEUE, 1, by_id[running])
    app.backend.store_result(running, None, "STARTED")
    for now in (1e10, 1e10 + CONFIRM_SECONDS + 1):
        report = reconcile(app, now)
        assert (report.checked, report.queued, report.unacked, report.running) == (3, 1, 1, 1)
        assert report.resent == [] and report.suspect == 0
    assert queued_ids(app) == [queued]


def test_a_message_lost_is_sent_again_after_two_sweeps_with_the_same_id(app: Any) -> None:
    task_id = app.tasks["ledgered.add"].delay(20, 22).id
    raw = lose(app)
    first = reconcile(app, 1e10)
    assert first.suspect == 1 and first.resent == [] and queued_ids(app) == []
    too_soon = reconcile(app, 1e10 + CONFIRM_SECONDS / 2)
    assert too_soon.resent == [] and queued_ids(app) == []
    second = reconcile(app, 1e10 + CONFIRM_SECONDS)
    assert second.resent == [task_id]
    assert app.redis_client().lrange(QUEUE, 0, -1) == [raw]  # the same message, byte for byte
    totals = ledger.stats(app.redis_client())
    assert totals["resent"] == 1
    assert status(app)["totals"]["resent"] == 1 and status(app)["tracked"] == 1


def test_a_lost_message_found_again_between_sweeps_is_not_sent(app: Any) -> None:
    app.tasks["ledgered.add"].delay(1, 2)
    raw = lose(app)
    assert reconcile(app, 1e10).suspect == 1
    app.redis_client().lpush(QUEUE, raw)  # it was in flight, not lost
    report = reconcile(app, 1e10 + CONFIRM_SECONDS)
    assert report.queued == 1 and report.resent == []
    assert app.redis_client().zcard(ledger.SUSPECT) == 0


def test_a_final_result_settles_the_entry(app: Any) -> None:
    client = app.redis_client()
    done = app.tasks["ledgered.add"].delay(1, 2).id
    failed = app.tasks["ledgered.add"].delay(1, 3).id
    client.delete(QUEUE)
    app.backend.store_result(done, 3, "SUCCESS")
    app.backend.store_result(failed, ValueError("no"), "FAILURE")
    report = reconcile(app, 1e10)
    assert report.settled == 2 and ledger.tracked(client) == 0
    assert client.hlen(ledger.MESSAGES) == 0


def test_a_message_lost_again_and_again_is_given_up_and_logged(app: Any) -> None:
    task_id = app.tasks["ledgered.add"].delay(1, 2).id
    now = 1e10
    resent = 0
    with capture_logs() as logs:
        for _ in range(3):  # max_resends=2
            lose(app)
            reconcile(app, now)
            report = reconcile(app, now + CONFIRM_SECONDS)
            resent += len(report.resent)
            now += 100
    assert resent == 2 and report.given_up == [task_id]
    assert ledger.tracked(app.redis_client()) == 0
    assert ledger.stats(app.redis_client())["given_up"] == 1
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events.count(("delivery.resent", "warning")) == 2
    assert ("delivery.given_up", "error") in events


def test_sweeps_never_overlap(app: Any) -> None:
    app.redis_client().set(ledger.LOCK, "another sweep")
    assert reconcile(app, 1e10).skipped


def test_only_entries_older_than_the_grace_period_are_checked(app: Any) -> None:
    app.tasks["ledgered.add"].delay(1, 2)
    lose(app)
    report = sweep(
        app.redis_client(), grace=60, max_resends=2, result_key=app.backend.get_key_for_task
    )
    assert report.tracked == 1 and report.checked == 0 and report.suspect == 0


# Transactional submission


def outbox_rows(app: Any) -> list[OutboxMessage]:
    with app.runtime.db.session() as session:
        return list(session.scalars(select(OutboxMessage)))


def test_delay_on_commit_publishes_after_the_commit(app: Any) -> None:
    with app.runtime.db.session() as session:
        task_id = app.tasks["ledgered.add"].delay_on_commit(session, 2, b=3)
        session.execute(text("SELECT 1"))
        assert queued_ids(app) == []  # not before the commit
        assert len(outbox_rows(app)) == 0  # nor visible to others
        session.commit()
    assert queued_ids(app) == [task_id]
    message = json.loads(app.redis_client().lindex(QUEUE, 0))
    assert message["headers"]["task"] == "ledgered.add"
    assert outbox_rows(app) == []  # published: the row is gone
    assert ledger.tracked(app.redis_client()) == 1


def test_a_rollback_sends_nothing(app: Any) -> None:
    with app.runtime.db.session() as session:
        app.tasks["ledgered.add"].delay_on_commit(session, 1, 1)
        session.rollback()
        kept = app.tasks["ledgered.add"].delay_on_commit(session, 2, 2)
        with session.begin_nested() as savepoint:
            app.tasks["ledgered.add"].delay_on_commit(session, 3, 3)
            savepoint.rollback()
        session.commit()
    assert queued_ids(app) == [kept]
    assert outbox_rows(app) == []


def test_bad_arguments_raise_at_once_and_write_nothing(app: Any) -> None:
    with app.runtime.db.session() as session:
        with pytest.raises(TaskArgumentError):
            app.tasks["ledgered.add"].delay_on_commit(session, 1)
        with pytest.raises(TaskArgumentError, match="takes the SQLAlchemy Session"):
            app.tasks["ledgered.add"].delay_on_commit("not a session", 1, 2)
        with pytest.raises(TaskArgumentError, match="does not take"):
            app.tasks["ledgered.add"].apply_async_on_commit(session, (1, 2), link="x")
        session.commit()
    assert queued_ids(app) == [] and outbox_rows(app) == []


def test_options_go_with_the_submission(app: Any) -> None:
    with app.runtime.db.session() as session:
        task_id = app.tasks["ledgered.add"].apply_async_on_commit(
            session, (1, 2), task_id="chosen-id", countdown=30, priority=3
        )
        session.commit()
    assert task_id == "chosen-id"
    [raw] = [
        r
        for key in app.redis_client().keys(f"{QUEUE}*")
        for r in app.redis_client().lrange(key, 0, -1)
    ]
    message = json.loads(raw)
    assert message["headers"]["id"] == "chosen-id" and message["headers"]["eta"]
    assert message["properties"]["priority"] == 3


def test_a_committed_row_not_published_is_relayed_once(app: Any) -> None:
    """What a process that died right after its commit leaves: the row. The relay sends it."""
    sent: list[str] = []
    with app.runtime.db.session() as session:
        task_id = app.tasks["ledgered.add"].delay_on_commit(session, 4, 5)
        # the process dies now: no after-commit publish happens
        session.info.pop("banktasks_outbox_pending")
        session.commit()
    assert [r.task_id for r in outbox_rows(app)] == [task_id] and queued_ids(app) == []
    assert relay(app.runtime.db.engine, lambda *a: sent.append(a[1]), older_than=60) == 0
    result = sweep_once(app)  # DELIVERY_OUTBOX_GRACE_SECONDS=10 by default: still too young
    assert result["outbox"]["relayed"] == 0
    assert relay(app.runtime.db.engine, app.send_checked, older_than=0) == 1
    assert queued_ids(app) == [task_id] and outbox_rows(app) == []
    assert relay(app.runtime.db.engine, app.send_checked, older_than=0) == 0


def test_a_broker_down_at_the_commit_leaves_the_row_for_the_relay(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(app, "send_checked", down)
    with app.runtime.db.session() as session:
        task_id = app.tasks["ledgered.add"].delay_on_commit(session, 4, 5)
        session.commit()  # the commit stands; the publish is deferred
    assert [r.task_id for r in outbox_rows(app)] == [task_id]
    monkeypatch.undo()
    assert relay(app.runtime.db.engine, app.send_checked, older_than=0) == 1
    assert queued_ids(app) == [task_id]


def test_a_savepoint_released_publishes_nothing_before_the_commit(app: Any) -> None:
    with app.runtime.db.session() as session:
        with session.begin_nested():
            task_id = app.tasks["ledgered.add"].delay_on_commit(session, 1, 1)
        assert queued_ids(app) == []  # released, not committed
        session.commit()
    assert queued_ids(app) == [task_id]


def test_the_metrics_plugin_scrapes_the_ledger(app: Any) -> None:
    from prometheus_client import generate_latest

    from core.default_plugins.metrics.plugin import build_registry

    app.tasks["ledgered.add"].delay(1, 2)
    lose(app)
    reconcile(app, 1e10)
    reconcile(app, 1e10 + CONFIRM_SECONDS)
    text = generate_latest(build_registry(app)).decode()
    assert "banktasks_delivery_tracked 1.0" in text
    assert "banktasks_delivery_resent_total 1.0" in text
    assert "banktasks_delivery_given_up_total 0.0" in text
    assert "banktasks_delivery_outbox_pending 0.0" in text


def test_a_long_queue_is_read_in_windows(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.default_plugins.delivery import reconciler

    monkeypatch.setattr(reconciler, "SCAN_ITEMS", 3)
    app.tasks["ledgered.add"].delay_many([{"a": i, "b": 0} for i in range(10)])
    lose(app)  # the oldest, at the tail
    report = reconcile(app, 1e10)
    assert (report.checked, report.queued, report.suspect) == (10, 9, 1)


def test_an_entry_published_again_since_the_look_is_not_resent(app: Any) -> None:
    client = app.redis_client()
    task_id = app.tasks["ledgered.add"].delay(1, 2).id
    lose(app)
    reconcile(app, 1e10)
    # a retry publishes the task again with the same id: a new message, a new delivery tag
    app.tasks["ledgered.add"].apply_async((1, 2), task_id=task_id)
    report = reconcile(app, 1e10 + CONFIRM_SECONDS)
    assert report.resent == [] and report.queued == 1
    assert client.llen(QUEUE) == 1


def test_a_plugins_own_task_object_submits_on_commit(make_app: Any) -> None:
    from core.taskdef import TaskDef

    add_task = task(add)
    app = make_app(fake_plugin("ledgered", register_tasks=lambda: [add_task]))
    assert isinstance(add_task, TaskDef)
    with app.runtime.db.session() as session:
        task_id = add_task.delay_on_commit(session, 1, 2)
        other = add_task.apply_async_on_commit(session, (3, 4), task_id="mine")
    assert queued_ids(app) == [task_id, other] and other == "mine"
