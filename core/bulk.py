"""Bulk submission: `task.delay_many(items)` sends many tasks in pipelined batches.

Two passes, so that a bad item sends nothing and memory stays flat:

1. *Validate*: every item (a dict of keyword arguments) is checked as `.delay()`
   checks it (type hints, `check`, message size); the JSON-safe message kwargs are
   streamed to a spool (a temporary JSON-lines file, deleted afterwards). A bad item
   raises TaskArgumentError naming its index; nothing has been sent.
2. *Take and publish*: the submission limit takes every item's token in one atomic
   call (core.ratelimit.take_submissions: all or nothing), then the spool is read back
   and each message is built by Celery (`app.amqp.create_task_message`, i.e.
   `as_task_v2`) and published by Celery (`app.amqp.send_task_message`) inside
   kombu's `Producer.batch()`: on Redis, `batch_size` LPUSHes go in one pipelined
   round trip. The messages are the ones `.apply_async()` sends (same headers,
   properties, routing, priority queue, body encoding, redacted `kwargsrepr`).

The task ids are generated here (a caller's `task_id` is refused) and returned in
item order.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from celery.utils import uuid
from kombu.utils.json import dumps as kombu_dumps

from core.errors import TaskArgumentError
from core.priority import check_priority
from core.ratelimit import SubmitLimit, take_submissions

DEFAULT_BATCH_SIZE = 1000
"""Messages per pipelined round trip to the broker."""
ALLOWED_OPTIONS = frozenset(
    {"countdown", "eta", "expires", "priority", "queue", "time_limit", "soft_time_limit"}
)
"""Celery options `delay_many` takes; they apply to every item alike."""
SPOOL_MEMORY = 1 << 20
"""Bytes of spool kept in memory before it goes to a temporary file."""

__all__ = ["ALLOWED_OPTIONS", "DEFAULT_BATCH_SIZE", "check_bulk_options", "send_many"]


def check_bulk_options(task_name: str, options: Mapping[str, Any], batch_size: int) -> None:
    """Refuse what a bulk send cannot take: ids (`task_id`, generated here), `retries`
    (set by Celery's retry only), canvas options (`link`, `chord`…) and a bad batch size."""
    if "task_id" in options:
        raise TaskArgumentError(
            f"{task_name}: delay_many generates the task ids (it returns them); "
            "task_id cannot be given"
        )
    if "retries" in options:
        raise TaskArgumentError(
            f"{task_name}: retries is set by Celery when a task retries; a caller cannot set it"
        )
    unknown = sorted(set(options) - ALLOWED_OPTIONS)
    if unknown:
        raise TaskArgumentError(
            f"{task_name}: delay_many does not take {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(ALLOWED_OPTIONS))}"
        )
    check_priority(task_name, options.get("priority"))
    if type(batch_size) is not int or batch_size < 1:
        raise TaskArgumentError(f"{task_name}: batch_size={batch_size!r} is not a whole number ≥ 1")


def send_many(
    task: Any,
    items: Iterable[Mapping[str, Any]],
    *,
    validate: Callable[[dict[str, Any]], dict[str, Any]],
    arguments_repr: Callable[[Any], str],
    limit: SubmitLimit | None,
    per_minute: int,
    batch_size: int,
    options: dict[str, Any],
) -> list[str]:
    """Validate every item to a spool, take the submission tokens, publish; return ids.

    `validate(kwargs)` returns the message kwargs of one item or raises
    TaskArgumentError; `arguments_repr` makes the redacted `argsrepr`/`kwargsrepr`;
    `limit`/`per_minute` are the task's submission limit in force (None/0: none).
    The caller (BanktasksTask.delay_many) has checked `options` already.
    """
    with tempfile.SpooledTemporaryFile(SPOOL_MEMORY, mode="w+", encoding="utf-8") as spool:
        count, counts = _validate_to_spool(task.name, items, validate, spool, limit)
        if count == 0:
            return []
        if limit is not None and per_minute > 0:
            take_submissions(task.app.redis_client(), task.name, limit, per_minute, counts)
        del counts
        spool.seek(0)
        return _publish(task, _read(spool), batch_size, options, arguments_repr)


def _validate_to_spool(
    name: str,
    items: Iterable[Mapping[str, Any]],
    validate: Callable[[dict[str, Any]], dict[str, Any]],
    spool: IO[str],
    limit: SubmitLimit | None,
) -> tuple[int, Counter[Any]]:
    """Validate each item, write its message kwargs as one JSON line; count per limit key."""
    counts: Counter[Any] = Counter()
    count = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TaskArgumentError(
                f"{name}: item {index}: expected a dict of keyword arguments, "
                f"got {type(item).__name__}; nothing was sent"
            )
        try:
            message = validate(dict(item))
        except TaskArgumentError as exc:
            reason = str(exc).removeprefix(f"{name}: ")
            raise TaskArgumentError(f"{name}: item {index}: {reason}; nothing was sent") from None
        if limit is not None and limit.per in message:
            counts[message[limit.per]] += 1
        spool.write(dumps(message))
        spool.write("\n")
        count += 1
    return count, counts


def _read(spool: IO[str]) -> Iterator[dict[str, Any]]:
    """The message kwargs back from the spool, one item at a time."""
    for line in spool:
        yield json.loads(line)


def _publish(
    task: Any,
    messages: Iterable[dict[str, Any]],
    batch_size: int,
    options: dict[str, Any],
    arguments_repr: Callable[[Any], str],
) -> list[str]:
    """Publish each item as `.apply_async(kwargs=...)` would, in pipelined batches.

    This follows `celery.app.base.Celery.send_task` step by step (options merged with
    the task's own, routed once, expiry, parent ids, priority inherited from a parent
    task), minus what a bulk send does not need per item: an AsyncResult, and the
    result backend's subscription to each task's result.
    """
    app = task.app
    amqp = app.amqp
    name = task.name
    argsrepr = arguments_repr([])
    # as BanktasksTask.apply_async: no time limits in the message unless `options` set
    # them, so the worker's settings decide
    preopts = {
        k: v
        for k, v in task._get_exec_options().items()
        if v is not None and k not in ("time_limit", "soft_time_limit")
    }
    opts = dict(preopts, **options, argsrepr=argsrepr, kwargsrepr="")
    opts.setdefault("ignore_result", task.ignore_result)
    opts = dict(preopts, **opts)  # as Celery.send_task merges them again (same order)
    countdown, eta = opts.pop("countdown", None), opts.pop("eta", None)
    time_limit = opts.pop("time_limit", None)
    soft_time_limit = opts.pop("soft_time_limit", None)
    expires = opts.pop("expires", None)
    ignore_result = opts.pop("ignore_result", None)
    routed = amqp.router.route(opts, name, (), {}, task)
    if expires is not None:
        routed["expiration"] = max(0.0, _seconds_until(app, expires))
    root_id = parent_id = None
    parent = app.current_worker_task
    if parent:
        root_id = parent.request.root_id or parent.request.id
        parent_id = parent.request.id
        if app.conf.task_inherit_parent_priority:
            routed.setdefault("priority", parent.request.delivery_info.get("priority"))
    sent_event = app.conf.task_send_sent_event
    reply_to = app.thread_oid
    ids: list[str] = []

    def build(kwargs: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
        """One message the way `.apply_async(kwargs=...)` builds it (Celery's builder)."""
        task_id = uuid()
        item = dict(routed)
        item["kwargsrepr"] = arguments_repr(kwargs)
        message = amqp.create_task_message(
            task_id,
            name,
            (),
            kwargs,
            countdown,
            eta,
            None,
            None,
            expires,
            0,
            None,
            None,
            None,
            reply_to,
            time_limit,
            soft_time_limit,
            sent_event,
            root_id,
            parent_id,
            task.shadow_name((), kwargs, item),
            None,
            ignore_result=ignore_result,
            replaced_task_nesting=0,
            **item,
        )
        return task_id, message, item

    with (
        app.producer_or_acquire() as producer,
        producer.connection._reraise_as_library_errors(),
        producer.batch(batch_size),
    ):
        items = iter(messages)
        first = next(items, None)
        if first is None:
            return ids
        # The first message goes all the way through Celery and kombu; what kombu's
        # channel is then given (the envelope before its last touches, the route, the
        # batch) is the template of the others, which only differ in their ids, body and
        # kwargsrepr. The template is used only if it rebuilds the first message exactly.
        task_id, message, item = build(first)
        with _recording(producer.channel) as recorded:
            amqp.send_task_message(producer, name, message, **item)
        ids.append(task_id)
        fast = _Template.from_recording(recorded, first, task_id, sent_event)
        for kwargs in items:
            if fast is not None:
                ids.append(fast.publish(kwargs, arguments_repr(kwargs)))
                continue
            task_id, message, item = build(kwargs)
            amqp.send_task_message(producer, name, message, **item)
            ids.append(task_id)
    return ids


class _Template:
    """The envelope of one bulk message, to publish the others like it, fast."""

    def __init__(self, call: tuple[Any, Any, dict[str, Any]], envelope: dict[str, Any]) -> None:
        self.basic_publish, self.route, self.kwargs = call
        self.envelope = envelope
        self.headers: dict[str, Any] = envelope["headers"]
        self.properties: dict[str, Any] = envelope["properties"]
        self.embed = json.loads(envelope["body"])[2]

    @classmethod
    def from_recording(
        cls, recorded: list[Any], kwargs: dict[str, Any], task_id: str, sent_event: bool
    ) -> _Template | None:
        """The template, if the first message was one plain publish that it rebuilds
        exactly (else None: every message then goes through Celery)."""
        if sent_event or len(recorded) != 1:
            return None
        call, envelope = recorded[0]
        try:
            template = cls(call, envelope)
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        rebuilt = template.envelope_for(task_id, kwargs, template.headers.get("kwargsrepr"))
        return template if rebuilt == envelope else None

    def envelope_for(self, task_id: str, kwargs: dict[str, Any], kwargsrepr: Any) -> dict[str, Any]:
        """The envelope of the message for `kwargs` with `task_id`, before kombu's channel
        adds its body encoding, delivery tag and delivery info."""
        headers = dict(self.headers, id=task_id, kwargsrepr=kwargsrepr)
        if self.headers.get("root_id") == self.headers.get("id"):
            headers["root_id"] = task_id
        properties = dict(self.properties, delivery_info=dict(self.properties["delivery_info"]))
        if self.properties.get("correlation_id") == self.headers.get("id"):
            properties["correlation_id"] = task_id
        body = kombu_dumps(((), kwargs, self.embed))
        return dict(self.envelope, body=body, headers=headers, properties=properties)

    def publish(self, kwargs: dict[str, Any], kwargsrepr: str) -> str:
        """Publish the message for `kwargs` through the same channel call; return its id."""
        task_id = uuid()
        envelope = self.envelope_for(task_id, kwargs, kwargsrepr)
        options = dict(self.kwargs)
        batch = options.pop("_publish_batch", None)
        exchange, routing_key = self.route
        if batch is not None:  # kombu's batch buffers it for the next pipelined round trip
            batch.publish(envelope, exchange=exchange, routing_key=routing_key, **options)
        else:
            self.basic_publish(envelope, exchange, routing_key, **options)
        return task_id


class _recording:
    """Within it, what a producer's channel is asked to publish is recorded as well:
    `(basic_publish, (exchange, routing_key), kwargs)` and a copy of the envelope."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.calls: list[Any] = []

    def __enter__(self) -> list[Any]:
        original = self.channel.basic_publish
        calls = self.calls

        def basic_publish(message: Any, exchange: Any, routing_key: Any, **kwargs: Any) -> Any:
            calls.append(((original, (exchange, routing_key), kwargs), copy.deepcopy(message)))
            return original(message, exchange, routing_key, **kwargs)

        self.channel.basic_publish = basic_publish
        return calls

    def __exit__(self, *exc: Any) -> None:
        del self.channel.basic_publish  # the class's method again


def _seconds_until(app: Any, expires: Any) -> float:
    """`expires` (seconds, a datetime or an ISO string) as seconds from now."""
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    if isinstance(expires, datetime):
        return float((expires - app.now()).total_seconds())
    return float(expires)
