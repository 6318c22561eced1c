"""Bulk submission (`task.delay_many`): validated first, all or nothing, same messages."""

from __future__ import annotations

import base64
import json
import tracemalloc
from typing import Any

import pytest

from banktasks_testing import fake_plugin
from core import SENT_AT_HEADER, SubmissionRateLimited, SubmitLimit, TaskArgumentError, task
from core.bulk import _validate_to_spool

NOTIFY = "bulky.notify"
PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: queue name + sep + priority step


def notify(user_id: int, note: str = "") -> int:
    """A task of a test plugin, limited per user."""
    return user_id


def envelopes(app: Any, queue: str) -> list[dict[str, Any]]:
    """The envelopes waiting in `queue`, oldest first."""
    return [json.loads(raw) for raw in reversed(app.redis_client().lrange(queue, 0, -1))]


def without_ids(envelope: dict[str, Any]) -> str:
    """The envelope as JSON (key order kept) with its per-message ids (and the time it
    was sent: `one` and `many` are sent a moment apart) blanked."""
    envelope = json.loads(json.dumps(envelope))
    for key in ("id", "root_id", SENT_AT_HEADER):
        envelope["headers"][key] = "-"
    for key in ("correlation_id", "delivery_tag"):
        envelope["properties"][key] = "-"
    return json.dumps(envelope)


@pytest.fixture
def app(make_app: Any) -> Any:
    plugin = fake_plugin(
        "bulky", register_tasks=lambda: [task(notify, submit_limit=SubmitLimit("user_id", 5))]
    )
    return make_app(plugin)


def test_the_messages_are_those_apply_async_sends(app: Any) -> None:
    kwargs = {"user_id": 1, "note": "for jane.doe@example.com"}
    task_ = app.tasks[NOTIFY]
    for options in ({}, {"priority": 6}, {"countdown": 30, "expires": 600}):
        one = task_.apply_async(kwargs=kwargs, **options).id
        # the first goes through Celery, the others are built from its envelope
        many = task_.delay_many([kwargs] * 3, **options)
        queue = "bulky" + (f"{PRIORITY_SEP}6" if options.get("priority") else "")
        sent, *bulk = envelopes(app, queue)
        assert [e["headers"]["id"] for e in (sent, *bulk)] == [one, *many]
        assert len(set(e["properties"]["delivery_tag"] for e in (sent, *bulk))) == 4
        for envelope in (sent, *bulk):
            assert envelope["headers"]["root_id"] == envelope["headers"]["id"]
            assert envelope["properties"]["correlation_id"] == envelope["headers"]["id"]
            if "countdown" in options:  # computed at send time, a moment apart
                envelope["headers"]["eta"] = envelope["headers"]["expires"] = "-"
        for envelope in bulk:
            assert without_ids(sent) == without_ids(envelope)
            assert "jane.doe@example.com" not in envelope["headers"]["kwargsrepr"]
        app.redis_client().delete(queue)
        app.redis_client().delete(*app.redis_client().keys("banktasks:submit:*"))


def test_all_but_the_first_message_are_built_from_its_envelope(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path is taken (Celery builds one message, the template the others), and
    each message carries its own arguments."""
    from core import bulk

    published: list[str] = []
    original = bulk._Template.publish

    def publish(self: Any, kwargs: dict[str, Any], kwargsrepr: str) -> str:
        published.append(kwargsrepr)
        return original(self, kwargs, kwargsrepr)

    monkeypatch.setattr(bulk._Template, "publish", publish)
    items = [{"user_id": 7, "note": f"n{i}"} for i in range(5)]
    app.tasks[NOTIFY].delay_many(items, batch_size=2)
    assert len(published) == 4
    bodies = [json.loads(base64.b64decode(e["body"])) for e in envelopes(app, "bulky")]
    assert [b[1] for b in bodies] == items


def test_the_ids_come_back_in_item_order(app: Any) -> None:
    items = [{"user_id": i % 5, "note": str(i)} for i in range(25)]
    ids = app.tasks[NOTIFY].delay_many(items, batch_size=7)
    queued = envelopes(app, "bulky")
    assert [e["headers"]["id"] for e in queued] == ids
    assert len(set(ids)) == 25
    assert queued[3]["properties"]["delivery_info"]["routing_key"] == "bulky"
    assert queued[3]["headers"]["task"] == NOTIFY


def test_a_bad_item_sends_nothing_and_is_named_by_its_index(app: Any) -> None:
    items: list[Any] = [{"user_id": i % 5} for i in range(100)]
    items[41] = {"user_id": "forty-one"}
    with pytest.raises(TaskArgumentError, match=r"^bulky\.notify: item 41: argument 'user_id'"):
        app.tasks[NOTIFY].delay_many(items)
    items[41] = {"user_id": 1, "path": "/etc"}
    with pytest.raises(TaskArgumentError, match="item 41: got an unexpected keyword argument"):
        app.tasks[NOTIFY].delay_many(iter(items))
    items[41] = [1]
    with pytest.raises(TaskArgumentError, match="item 41: expected a dict"):
        app.tasks[NOTIFY].delay_many(items)
    assert app.redis_client().llen("bulky") == 0
    assert app.redis_client().keys("banktasks:submit:*") == []  # no token taken either


def test_an_oversized_item_sends_nothing(make_app: Any) -> None:
    plugin = fake_plugin("bulky", register_tasks=lambda: [task(notify)])
    app = make_app(plugin, banktasks_max_message_bytes=1024)
    items = [{"user_id": 1}, {"user_id": 2, "note": "x" * 2000}]
    with pytest.raises(TaskArgumentError, match=r"item 1: .*BANKTASKS_MAX_MESSAGE_BYTES=1024"):
        app.tasks[NOTIFY].delay_many(items)
    assert app.redis_client().llen("bulky") == 0


def test_the_submission_limit_is_all_or_nothing(app: Any) -> None:
    bulk = app.tasks[NOTIFY].delay_many
    bulk([{"user_id": 1}] * 3 + [{"user_id": 2}] * 2)
    with pytest.raises(SubmissionRateLimited, match=r"user_id=1 \(3 in this call\); nothing"):
        bulk([{"user_id": 2}] * 3 + [{"user_id": 1}] * 3)  # user 1 has 2 tokens left
    assert app.redis_client().llen("bulky") == 5
    bulk([{"user_id": 2}] * 3)  # user 2's tokens were not taken by the refused call
    with pytest.raises(SubmissionRateLimited, match="6 submissions for user_id=3 in one call"):
        bulk([{"user_id": 3}] * 6)
    with pytest.raises(SubmissionRateLimited):
        app.tasks[NOTIFY].delay(user_id=2)  # .delay() shares the same buckets
    app.tasks[NOTIFY].delay(user_id=1)
    assert app.redis_client().llen("bulky") == 9


def test_priority_and_queue_are_honoured(app: Any) -> None:
    app.tasks[NOTIFY].delay_many([{"user_id": 1}], priority=9)
    app.tasks[NOTIFY].delay_many([{"user_id": 2}], queue="celery")
    (high,) = envelopes(app, f"bulky{PRIORITY_SEP}9")
    assert high["properties"]["priority"] == 9
    (routed,) = envelopes(app, "celery")
    assert routed["properties"]["delivery_info"]["routing_key"] == "celery"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"task_id": "mine"}, "generates the task ids"),
        ({"retries": 1}, "set by Celery when a task retries"),
        ({"link": None}, "does not take link"),
        ({"countdown": 10**7}, "visibility timeout"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_refused_options_send_nothing(app: Any, options: dict[str, Any], error: str) -> None:
    with pytest.raises(TaskArgumentError, match=error):
        app.tasks[NOTIFY].delay_many([{"user_id": 1}], **options)
    assert app.redis_client().llen("bulky") == 0


def test_the_taskdef_forwards_and_nothing_is_sent_for_no_items(app: Any) -> None:
    spec = app.runtime.tasks[NOTIFY]
    assert spec.delay_many([]) == []
    ids = spec.delay_many({"user_id": u} for u in (1, 2))
    assert [e["headers"]["id"] for e in envelopes(app, "bulky")] == ids


def test_validating_many_items_keeps_memory_flat(app: Any, tmp_path: Any) -> None:
    """200k items go through the validation pass in a few MB: they wait on disk."""
    task_ = app.tasks[NOTIFY]

    def validate(kwargs: dict[str, Any]) -> dict[str, Any]:
        return dict(task_.spec.message_kwargs((), kwargs))

    items = ({"user_id": i, "note": f"notice {i:08d} " + "x" * 40} for i in range(200_000))
    with (tmp_path / "spool").open("w+") as spool:
        tracemalloc.start()
        try:
            count, counts = _validate_to_spool(NOTIFY, items, validate, spool, None)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == 200_000 and not counts
        assert spool.tell() > 10_000_000  # about 14 MB of items went to the file...
    assert peak < 2_000_000, f"peak {peak} bytes"  # ...and never sat in memory
