"""The built-in check `queue_backlog`: per queue, how many messages wait and for how long.

It reads the broker's Redis lists without consuming anything: `LLEN` of each
queue (and of its priority lists, `<queue>\\x06\\x16<step>`, as kombu names them)
and `LINDEX <list> -1`, the oldest message (kombu pushes on the left and pops on
the right). A message waited since its `banktasks_sent_at` header (seconds since
the epoch; the core stamps it on every send of a banktasks task), or since its `eta`
when that is later. A message without either (from another sender) is tracked by
id: the check remembers in the hash `banktasks:health:backlog` when it first saw a
message at the head of a list, so its age is known from the next check on (a lower
bound). Messages a worker has already taken (prefetched, or waiting for their ETA)
are not counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from core import SENT_AT_HEADER, queue_lists
from plugins.health.api import CheckContext, CheckResult
from plugins.health.settings import HealthSettings

TRACKED_KEY = "banktasks:health:backlog"
REDIS_SCHEMES = {"redis": "redis", "rediss": "rediss", "valkey": "redis", "valkeys": "rediss"}


def redis_client(url: str, timeout: float) -> Any:
    """A redis client on `url` (valkey:// schemes too) with socket timeouts and no retry."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    parts = urlsplit(url)
    scheme = REDIS_SCHEMES.get(parts.scheme, parts.scheme)
    return redis.Redis.from_url(
        urlunsplit(parts._replace(scheme=scheme)),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


@dataclass
class QueueBacklog:
    """What one queue holds: its message count and how long the oldest has waited."""

    name: str
    length: int = 0
    oldest_seconds: float | None = None
    lists: list[str] = field(default_factory=list)


def _headers(raw: bytes) -> tuple[str, dict[str, Any]]:
    """The message's identity (its task id, else a hash) and its headers ({} if unreadable)."""
    try:
        headers = json.loads(raw).get("headers") or {}
    except (ValueError, AttributeError):
        headers = {}
    if not isinstance(headers, dict):
        headers = {}
    identity = headers.get("id")
    if not isinstance(identity, str) or not identity:
        identity = "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
    return identity, headers


def waiting_since(headers: dict[str, Any]) -> float | None:
    """When the message started to wait (epoch seconds): its sent-at header, or its `eta`
    when that is later; None when it carries neither."""
    sent = headers.get(SENT_AT_HEADER)
    start = float(sent) if isinstance(sent, int | float) and not isinstance(sent, bool) else None
    eta = headers.get("eta")
    if isinstance(eta, str):
        try:
            due = datetime.fromisoformat(eta)
        except ValueError:
            due = None
        if due is not None and due.tzinfo is not None:
            start = max(start or 0.0, due.timestamp())
    return start


def measure(client: Any, app: Any, now: datetime) -> list[QueueBacklog]:
    """Every queue's backlog as of `now`; remembers untimed heads in TRACKED_KEY."""
    lists = queue_lists(app)
    flat = [(queue, name) for queue, names in lists.items() for name in names]
    with client.pipeline(transaction=False) as pipe:
        for _queue, name in flat:
            pipe.llen(name)
            pipe.lindex(name, -1)
        pipe.hgetall(TRACKED_KEY)
        replies = pipe.execute()
    tracked = {
        (k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in replies[-1].items()
    }
    found = {queue: QueueBacklog(queue, lists=names) for queue, names in lists.items()}
    updates: dict[str, str] = {}
    gone: list[str] = []
    stamp = now.timestamp()
    for index, (queue, name) in enumerate(flat):
        length, head = replies[2 * index], replies[2 * index + 1]
        backlog = found[queue]
        backlog.length += int(length or 0)
        if head is None:
            if name in tracked:
                gone.append(name)
            continue
        identity, headers = _headers(head)
        start = waiting_since(headers)
        if start is None:
            seen = tracked.get(name) or {}
            if seen.get("id") == identity:
                start = float(seen.get("seen", stamp))
            else:
                updates[name] = json.dumps({"id": identity, "seen": stamp})
                start = stamp
        age = max(0.0, stamp - start)
        backlog.oldest_seconds = max(backlog.oldest_seconds or 0.0, age)
    if updates or gone:
        with client.pipeline(transaction=False) as pipe:
            if updates:
                pipe.hset(TRACKED_KEY, mapping=updates)
            if gone:
                pipe.hdel(TRACKED_KEY, *gone)
            pipe.execute()
    return list(found.values())


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class QueueBacklogCheck:
    """Per queue: more than HEALTH_QUEUE_MAX_LENGTH messages, or an oldest message
    older than HEALTH_QUEUE_MAX_AGE_SECONDS → degraded (value = the oldest age, s)."""

    name = "queue_backlog"

    def run(self, ctx: CheckContext) -> CheckResult:
        """Measure every queue of the app on its Redis broker (read-only for the queues)."""
        settings: HealthSettings = ctx.settings
        max_age, max_length = settings.queue_max_age_seconds, settings.queue_max_length
        url = str(ctx.app.conf.broker_url)
        if urlsplit(url).scheme not in {*REDIS_SCHEMES, "unix"}:
            return CheckResult("ok", "not measured: the broker is not Redis/Valkey")
        client = redis_client(url, ctx.timeout)
        try:
            queues = measure(client, ctx.app, ctx.now)
        finally:
            client.close()
        oldest = max((q.oldest_seconds or 0.0 for q in queues), default=0.0)
        over = [q for q in queues if q.length > max_length or (q.oldest_seconds or 0.0) > max_age]
        if not over:
            total = sum(q.length for q in queues)
            return CheckResult(
                "ok",
                f"{len(queues)} queues, {total} message(s) waiting, the oldest for "
                f"{_age(oldest)} (limits: {max_length} messages, {_age(max_age)})",
                value=round(oldest),
                threshold=max_age,
            )
        parts = [
            f"queue {q.name!r}: {q.length} message(s) (max {max_length}), the oldest waiting "
            f"{_age(q.oldest_seconds or 0)} (max {_age(max_age)})"
            for q in over
        ]
        return CheckResult(
            "degraded",
            "; ".join(parts) + ": are workers consuming these queues?",
            value=round(oldest),
            threshold=max_age,
        )
