"""Poison messages: an item on a queue that cannot be decoded or used is set aside, once.

Anyone with access to the broker can push any item onto a queue (`LPUSH`). kombu and
Celery trust what they read: an item that is not JSON, an envelope, `headers` or
`properties` that are not objects, or a body that is not base64 raise where nobody
catches them and the worker stops ("Unrecoverable error"); a body of the wrong shape
fails after the message was put in the unacknowledged set, so the message goes back to
the queue and stops every worker started after that one.

`install_poison_guard(app)` (called by `create_app`) guards an app's workers at two levels:

1. **Transport.** kombu's Redis channel reads each popped item through `screen()`
   first: the size of the raw bytes (before anything is decoded), UTF-8 and JSON, and
   the fields kombu itself relies on. An item that fails is replaced by a small
   *rejection message* for the same queue: an empty body, and the header
   `banktasks_rejected` saying why, with the item's size, sha256 and first 4096 bytes.
   It then goes the normal way (into the unacknowledged set, to the consumer), so a
   worker that dies meanwhile leaves it to the next one instead of losing it.
2. **Consumer.** The app's Celery consumer (`GuardedConsumer`, set as `worker_consumer`)
   checks every message against Celery's protocol 2 before Celery handles it: header
   types, a JSON body `[args, kwargs, embed]`, a registered task. A rejection message,
   a message that fails a check, and anything Celery itself refuses (decode errors,
   invalid or unknown tasks) is handed to the app's `on_message_rejected` listeners,
   logged without its content, and acknowledged: it leaves the broker and never comes
   back. An error Celery raises while reading a message that passed the checks is
   treated the same way, so no message can stop the consumer.

Valid messages are decoded once, as before: the checks use what kombu decodes anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from datetime import datetime
from typing import Any, cast

from core.logging import get_logger, redact_text

log = get_logger(__name__)

UNDECODABLE = "undecodable message"
MALFORMED = "malformed message"
OVERSIZED = "oversized message"
UNKNOWN_TASK = "unknown task"
REASONS = (UNDECODABLE, MALFORMED, OVERSIZED, UNKNOWN_TASK)
"""Why a message was set aside (the `reason` given to `on_message_rejected`)."""

EXCERPT_BYTES = 4096
"""How much of a rejected item listeners get (redacted)."""
MAX_ID_CHARS = 64
REJECTED_HEADER = "banktasks_rejected"
ITEM_LIMIT_OPTION = "banktasks_max_item_bytes"
"""Broker transport option: the largest raw item (bytes) a worker reads; set per app."""
ENVELOPE_ALLOWANCE = 64 * 1024
"""Room for the envelope (headers, properties) around a body of the largest size."""
EMBED_KEYS = frozenset({"callbacks", "errbacks", "chain", "chord"})
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in an envelope or a body (Python's JSON
encoder and pickle recurse: a message nested a thousand levels deep would fail there)."""
DETAIL_CHARS = 300
HEX64 = re.compile(r"[0-9a-f]{64}")

_HEADER_TYPES: dict[str, tuple[type, ...]] = {
    "lang": (str,),
    "shadow": (str,),
    "eta": (str, datetime),
    "expires": (str, datetime),
    "group": (str,),
    "group_index": (int,),
    "retries": (int,),
    "root_id": (str,),
    "parent_id": (str,),
    "argsrepr": (str,),
    "kwargsrepr": (str,),
    "origin": (str,),
    "ignore_result": (bool,),
    "replaced_task_nesting": (int,),
    "stamped_headers": (list,),
    "stamps": (dict,),
}
"""Celery's protocol-2 headers and their types (when not null)."""


class Rejected(Exception):
    """A message that cannot be used: `reason` is one of REASONS, `detail` says what."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:DETAIL_CHARS]


def max_item_bytes(max_message_bytes: int) -> int:
    """The largest raw item a worker reads when callers may send `max_message_bytes` of
    JSON arguments (measured compact): kombu writes the body's JSON with a space after
    each separator (at most 1.5 times as long) and in base64 (4/3), so twice the limit,
    plus 64 KiB for the envelope (headers, properties)."""
    return 2 * max_message_bytes + ENVELOPE_ALLOWANCE


# --- what the checks report ----------------------------------------------------------


def _kind(value: Any) -> str:
    """A JSON word for a decoded value's type (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _error(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:DETAIL_CHARS]


def _require(ok: bool, reason: str, detail: str) -> None:
    if not ok:
        raise Rejected(reason, detail)


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if arrays/objects nest deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def task_id_of(headers: Any) -> str | None:
    """The message's task id when it is usable as one: a string of 1 to 64 printable
    characters without spaces (Celery's ids are UUIDs); else None."""
    value = headers.get("id") if isinstance(headers, dict) else None
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_CHARS
        and value.isprintable()
        and not any(c.isspace() for c in value)
    ):
        return value
    return None


def task_name_of(headers: Any) -> str | None:
    """The task name the message gives, if it is a non-empty string (at most 200 chars)."""
    value = headers.get("task") if isinstance(headers, dict) else None
    return value[:200] if isinstance(value, str) and value else None


# --- 1. the transport: raw items -------------------------------------------------------


def check_envelope(envelope: Any) -> None:
    """Raise Rejected unless kombu can turn `envelope` into a message without failing."""
    _require(isinstance(envelope, dict), MALFORMED, f"the item is {_kind(envelope)}, not an object")
    _require(not _too_deep(envelope), MALFORMED, f"the item nests deeper than {MAX_DEPTH} levels")
    properties = envelope.get("properties")
    _require(
        isinstance(properties, dict), MALFORMED, f"properties is {_kind(properties)}, not an object"
    )
    tag = properties.get("delivery_tag")
    _require(
        isinstance(tag, str) and 0 < len(tag) <= 128,
        MALFORMED,
        "properties.delivery_tag is not a string of 1 to 128 characters",
    )
    info = properties.get("delivery_info")
    _require(
        isinstance(info, dict),
        MALFORMED,
        f"properties.delivery_info is {_kind(info)}, not an object",
    )
    for key in ("exchange", "routing_key"):
        value = info.get(key)
        _require(
            isinstance(value, str),
            MALFORMED,
            f"properties.delivery_info.{key} is {_kind(value)}, not a string",
        )
    priority = properties.get("priority")
    _require(
        priority is None or (_is_int(priority) and 0 <= priority <= 255),
        MALFORMED,
        "properties.priority is not a number from 0 to 255",
    )
    encoding = properties.get("body_encoding")
    _require(encoding == "base64", MALFORMED, "properties.body_encoding is not 'base64'")
    headers = envelope.get("headers")
    _require(
        headers is None or isinstance(headers, dict),
        MALFORMED,
        f"headers is {_kind(headers)}, not an object",
    )
    _require(
        not headers or headers.get("compression") is None,
        MALFORMED,
        "the body is compressed (banktasks never compresses messages)",
    )
    for key in ("content-type", "content-encoding"):
        value = envelope.get(key)
        _require(value is None or isinstance(value, str), MALFORMED, f"{key} is {_kind(value)}")
    body = envelope.get("body")
    _require(isinstance(body, str), MALFORMED, f"body is {_kind(body)}, not a string")
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected(UNDECODABLE, f"the body is not valid base64 ({_error(exc)})") from None


def screen(item: bytes, queue: str, limit: int) -> dict[str, Any]:
    """The envelope kombu is to read for a popped `item`: its own if it is usable,
    else a rejection message for `queue` in its place. `limit` applies to the raw
    bytes, before anything is decoded."""
    envelope: Any = None
    try:
        _require(
            len(item) <= limit,
            OVERSIZED,
            f"{len(item)} bytes; the limit is {limit} (BANKTASKS_MAX_MESSAGE_BYTES)",
        )
        try:
            envelope = _loads(item.decode("utf-8"))
        except Exception as exc:  # UnicodeDecodeError, JSONDecodeError, RecursionError, …
            raise Rejected(UNDECODABLE, f"the item is not JSON ({_error(exc)})") from None
        check_envelope(envelope)
    except Rejected as rejected:
        return rejection_message(queue, rejected, item, envelope)
    return cast(dict[str, Any], envelope)


def _loads(text: str) -> Any:
    from kombu.utils.json import loads  # kombu's own decoding (its type hooks)

    return loads(text)


def rejection_message(
    queue: str, rejected: Rejected, item: bytes, envelope: Any = None
) -> dict[str, Any]:
    """A small, valid message for `queue` that stands for the rejected `item`."""
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    record = {
        "reason": rejected.reason,
        "detail": rejected.detail,
        "queue": queue,
        "size": len(item),
        "fingerprint": hashlib.sha256(item).hexdigest(),
        "excerpt": item[:EXCERPT_BYTES].decode("utf-8", "replace"),
        "id": task_id_of(headers),
        "task": task_name_of(headers),
    }
    return {
        "body": "",
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {REJECTED_HEADER: record},
        "properties": {
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def _item_limit(channel: Any) -> int | None:
    """The app's raw-item limit, from the connection's transport options (None: unguarded)."""
    limit = channel.__dict__.get("_banktasks_item_limit", False)
    if limit is False:
        client = getattr(channel.connection, "client", None)
        options = getattr(client, "transport_options", None) or {}
        limit = options.get(ITEM_LIMIT_OPTION)
        channel.__dict__["_banktasks_item_limit"] = limit
    return limit if isinstance(limit, int) else None


def screen_popped_items() -> None:
    """Make kombu's Redis channel screen each item it pops before reading it.

    kombu (5.4 to 5.7) reads a popped item in `Channel._brpop_read` with
    `self.connection._deliver(loads(bytes_to_str(item)), dest)`: an item that is not
    JSON raises there, and one that is JSON but not a message raises in `_deliver`
    (building the message); either error stops the worker, and the item, already
    popped, is lost. This replaces `_brpop_read` with the same steps (kombu 5.7's)
    except that `screen()` turns the item into the envelope to deliver: its own, or a
    rejection message. Channels of connections without the `banktasks_max_item_bytes`
    transport option (not a banktasks app) keep kombu's own `_brpop_read`. Idempotent;
    applied by `install_poison_guard`.
    """
    from kombu.transport import redis as kombu_redis
    from kombu.utils.encoding import bytes_to_str

    original = kombu_redis.Channel._brpop_read
    if getattr(original, "_banktasks_patched", False):
        return
    empty = kombu_redis.Empty

    def _brpop_read(self: Any, **options: Any) -> Any:
        limit = _item_limit(self)
        if limit is None:
            return original(self, **options)
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # disconnect so that the next iteration reconnects
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self.connection._deliver(screen(item, dest, limit), dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu 5.7
            if flush is not None:
                flush()

    _brpop_read._banktasks_patched = True  # type: ignore[attr-defined]
    _brpop_read._banktasks_original = original  # type: ignore[attr-defined]
    kombu_redis.Channel._brpop_read = _brpop_read  # type: ignore[method-assign]


def _lost_connection(exc: BaseException, connection_errors: tuple[type, ...]) -> bool:
    """True for a broker connection error. kombu's Redis transport counts KeyError as one;
    raised while a message is read, it is the message's fault (taking it for a lost
    connection makes the worker reconnect and give the message back, again and again)."""
    return isinstance(exc, connection_errors) and not isinstance(exc, KeyError)


def drop_bad_broadcasts() -> None:
    """Make kombu's Redis channel drop a broadcast message it cannot deliver.

    Broadcasts (remote control, `celery.pidbox`; events) come through Redis pub/sub:
    kombu 5.7 reads each in `Channel._receive_one` and hands it on; anything but a
    usable envelope raises there: a JSON array stops the worker, a KeyError makes it
    reconnect, and one `PUBLISH` reaches every worker at once. A broadcast is not stored
    on the broker and never redelivered, so one that fails is dropped, with a warning
    (not its content).
    Connection errors, and what is not an `Exception` (a remote `shutdown`), pass. The
    channels of connections that are not a banktasks app's keep kombu's behaviour.
    Idempotent; applied by `install_poison_guard`.
    """
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._receive_one
    if getattr(original, "_banktasks_patched", False):
        return
    empty = kombu_redis.Empty

    def _receive_one(self: Any, c: Any) -> Any:
        if _item_limit(self) is None:
            return original(self, c)
        try:
            return original(self, c)
        except Exception as exc:
            if isinstance(exc, empty) or _lost_connection(exc, self.connection_errors):
                raise
            log.warning("broadcast_dropped", reason=MALFORMED, detail=_error(exc))
            return False

    _receive_one._banktasks_patched = True  # type: ignore[attr-defined]
    kombu_redis.Channel._receive_one = _receive_one  # type: ignore[method-assign]


# --- 2. the consumer: Celery's protocol 2 ----------------------------------------------


def check_headers(headers: Any) -> None:
    """Raise Rejected unless `headers` are protocol-2 task headers Celery can use."""
    _require(isinstance(headers, dict), MALFORMED, f"headers is {_kind(headers)}, not an object")
    task = headers.get("task")
    if task is None or task == "":
        raise Rejected(MALFORMED, "headers.task is missing")
    _require(isinstance(task, str), MALFORMED, f"headers.task is {_kind(task)}")
    _require(
        task_id_of(headers) is not None,
        MALFORMED,
        "headers.id is not a task id (a string of 1 to 64 characters without spaces)",
    )
    for key, types in _HEADER_TYPES.items():
        value = headers.get(key)
        ok = value is None or (
            isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        )
        _require(ok, MALFORMED, f"headers.{key} is {_kind(value)}")
    limits = headers.get("timelimit")
    _require(
        limits is None
        or (
            isinstance(limits, list | tuple)
            and len(limits) == 2
            and all(
                v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v >= 0)
                for v in limits
            )
        ),
        MALFORMED,
        "headers.timelimit is not [soft, hard] (numbers of seconds or null)",
    )


def check_body(body: Any) -> None:
    """Raise Rejected unless the decoded body is protocol 2's `[args, kwargs, embed]`."""
    _require(
        isinstance(body, list | tuple) and len(body) == 3,
        MALFORMED,
        f"the body is {_kind(body)}, not [args, kwargs, embed]",
    )
    _require(not _too_deep(body), MALFORMED, f"the body nests deeper than {MAX_DEPTH} levels")
    args, kwargs, embed = body
    _require(isinstance(args, list | tuple), MALFORMED, f"args is {_kind(args)}, not an array")
    _require(isinstance(kwargs, dict), MALFORMED, f"kwargs is {_kind(kwargs)}, not an object")
    _require(embed is None or isinstance(embed, dict), MALFORMED, f"embed is {_kind(embed)}")
    embed = embed or {}
    _require(
        set(embed) <= EMBED_KEYS, MALFORMED, "embed has keys other than " + str(sorted(EMBED_KEYS))
    )
    for key in ("callbacks", "errbacks", "chain"):
        value = embed.get(key)
        _require(
            value is None or (isinstance(value, list) and all(isinstance(v, dict) for v in value)),
            MALFORMED,
            f"embed.{key} is not an array of signatures",
        )
    chord = embed.get("chord")
    _require(chord is None or isinstance(chord, dict), MALFORMED, "embed.chord is not a signature")


def check_message(message: Any, known_tasks: Any) -> None:
    """Raise Rejected unless `message` (a kombu message) is a protocol-2 message for a
    task in `known_tasks` that Celery can handle. Its body is decoded by kombu (its
    content type must be accepted) and cached, as Celery would decode it."""
    headers = message.headers
    if isinstance(headers, dict) and REJECTED_HEADER in headers:
        record = headers[REJECTED_HEADER]
        reason = record.get("reason") if isinstance(record, dict) else None
        detail = record.get("detail") if isinstance(record, dict) else None
        raise Rejected(
            reason if reason in REASONS else MALFORMED,
            detail if isinstance(detail, str) else "set aside by the transport",
        )
    check_headers(headers)
    try:
        body = message.decode()
    except Exception as exc:  # ContentDisallowed, DecodeError, …
        raise Rejected(UNDECODABLE, f"the body cannot be decoded ({_error(exc)})") from None
    check_body(body)
    task = headers["task"]
    _require(task in known_tasks, UNKNOWN_TASK, f"no enabled plugin registers {task[:200]!r}")


def _canonical(raw: Any) -> bytes:
    """The envelope as JSON, without the marks kombu adds when it redelivers it."""
    if isinstance(raw, dict):
        raw = dict(raw)
        headers = raw.get("headers")
        if isinstance(headers, dict):
            raw["headers"] = {k: v for k, v in headers.items() if k != "redelivered"}
        properties = raw.get("properties")
        if isinstance(properties, dict) and isinstance(properties.get("delivery_info"), dict):
            info = {k: v for k, v in properties["delivery_info"].items() if k != "redelivered"}
            raw["properties"] = {**properties, "delivery_info": info}
    return json.dumps(raw, sort_keys=True, default=str).encode()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def describe(message: Any) -> tuple[str, dict[str, Any]]:
    """The queue of a rejected kombu message, and what listeners learn of it: task id
    and name (when known), size, sha256 fingerprint, first 4096 bytes (redacted)."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    record = headers.get(REJECTED_HEADER)
    if isinstance(record, dict):  # a rejection message: the transport described the item
        source: dict[str, Any] = record
        queue = _text(record.get("queue"))
        size = record["size"] if _is_int(record.get("size")) else 0
        fingerprint = _text(record.get("fingerprint"))
        excerpt = _text(record.get("excerpt"))
    else:
        try:
            raw = _canonical(getattr(message, "_raw", None) or headers)
        except Exception:  # nested too deep to encode again
            raw = message.body if isinstance(message.body, bytes) else b""
        info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
        source = headers
        queue = _text(info.get("routing_key"))
        size = len(raw)
        fingerprint = hashlib.sha256(raw).hexdigest()
        excerpt = raw[:EXCERPT_BYTES].decode("utf-8", "replace")
    if not HEX64.fullmatch(fingerprint):
        fingerprint = hashlib.sha256(str(message.delivery_tag).encode()).hexdigest()
    return queue[:200], {
        "id": task_id_of(source),
        "task": task_name_of(source),
        "size": size,
        "fingerprint": fingerprint,
        "excerpt": redact_text(excerpt[:EXCERPT_BYTES]),
    }


def _consumer_class() -> type:
    """Celery's worker consumer with the protocol-2 checks (built on first use: importing
    Celery's worker modules is left to the processes that run a worker)."""
    from celery.exceptions import NotRegistered
    from celery.utils.collections import AttributeDict
    from celery.worker.consumer.consumer import Consumer

    class GuardedConsumer(Consumer):  # type: ignore[misc]
        """Sets aside, once, every message it cannot hand to a task (see core.poison)."""

        def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
            handle = super().create_task_handler(*args, **kwargs)

            def on_task_received(message: Any) -> Any:
                try:
                    check_message(message, self.strategies)
                except Rejected as rejected:
                    return self.set_aside(message, rejected.reason, rejected.detail)
                try:
                    return handle(message)
                except Exception as exc:  # anything else Celery trips over
                    if _lost_connection(exc, self.connection_errors):
                        raise
                    frame = exc.__traceback__
                    while frame is not None and frame.tb_next is not None:
                        frame = frame.tb_next
                    where = (
                        f" at {frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}"
                        if frame is not None
                        else ""
                    )
                    if message.acknowledged:
                        log.error("message_handling_failed", error=_error(exc), where=where)
                        return None
                    return self.set_aside(message, MALFORMED, f"{_error(exc)}{where}")

            return on_task_received

        def on_decode_error(self, message: Any, exc: Exception) -> None:
            self.set_aside(message, UNDECODABLE, f"the body cannot be decoded ({_error(exc)})")

        def on_unknown_message(self, body: Any, message: Any) -> None:
            self.set_aside(message, MALFORMED, "not a Celery protocol 2 task message")

        def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
            name = task_name_of(message.headers) or "?"
            self.set_aside(message, UNKNOWN_TASK, f"no enabled plugin registers {name!r}")

        def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
            self.set_aside(message, MALFORMED, _error(exc))

        def set_aside(self, message: Any, reason: str, detail: str) -> None:
            """Hand the message to the listeners, log it (not its content), ack it."""
            queue, found = describe(message)
            found["detail"] = redact_text(detail)[:DETAIL_CHARS]
            log.warning(
                "message_rejected",
                queue=queue,
                reason=reason,
                detail=found["detail"],
                task_id=found["id"],
                task_name=found["task"],
                size=found["size"],
                fingerprint=found["fingerprint"],
            )
            runtime = getattr(self.app, "runtime", None)
            if runtime is not None:  # each listener on its own (an error is logged)
                runtime.plugins.call_each(
                    "on_message_rejected", queue=queue, reason=reason, message=found
                )
            if reason == UNKNOWN_TASK and found["id"]:
                self._fail_result(found["id"], found["task"] or "?")
            if not message.acknowledged:
                message.ack()

        def _fail_result(self, task_id: str, name: str) -> None:
            """As Celery does for an unknown task: a caller waiting on it gets NotRegistered."""
            try:
                request = AttributeDict(name=name, chord=None, root_id=None, errbacks=None)
                self.app.backend.mark_as_failure(task_id, NotRegistered(name), request=request)
            except Exception as exc:  # the result backend is down: the dead letter stays
                log.error("rejected_result_not_stored", task_id=task_id, error=_error(exc))

    return GuardedConsumer


def __getattr__(name: str) -> Any:
    if name == "GuardedConsumer":
        cls = _consumer_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install_poison_guard(app: Any) -> None:
    """Guard `app`'s workers against poison messages (see the module docstring).

    Sets the app's `worker_consumer` to `core.poison:GuardedConsumer` and the transport
    option `banktasks_max_item_bytes` (from `BANKTASKS_MAX_MESSAGE_BYTES`), and patches
    kombu's Redis channel (once per process): `screen_popped_items` and
    `drop_bad_broadcasts`. Call it after the app's configuration.
    """
    screen_popped_items()
    drop_bad_broadcasts()
    limit = max_item_bytes(app.runtime.settings.banktasks_max_message_bytes)
    options = dict(app.conf.broker_transport_options or {})
    options[ITEM_LIMIT_OPTION] = limit
    app.conf.broker_transport_options = options
    app.conf.worker_consumer = f"{__name__}:GuardedConsumer"
