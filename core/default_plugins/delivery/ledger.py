"""The delivery ledger: every task message published, kept on the broker until it settles.

kombu's Redis transport publishes a message with one LPUSH. With the ledger on
(`configure_app` sets the transport option `banktasks_ledger`), the LPUSH is done by a
Lua script (atomic, like MULTI/EXEC, and one command: `PUBLISH`) with two more
writes, so the message and its ledger entry exist together or not at all, in the same
round trip:

- `HSET banktasks:delivery:messages <task id> "<queue list>\\0<message>"`: the exact
  message and the list it went to (its priority list included), to send it again;
- `ZADD banktasks:delivery:sent <now> <task id>`: when it was (last) sent.

A bulk send (`delay_many`, kombu's publish batch) writes the entries of a batch with
one HSET and one ZADD, put first in its pipeline, which is not a transaction: what a
cut-off batch can leave is an entry without its message, which the reconciler sends,
never a message without its entry. A retry is published again with the same id: its
entry is replaced.

An entry is removed ("settled") when its task reaches a final state: in the worker
after the task ran (`task_postrun` with SUCCESS, FAILURE or REVOKED), when a worker
revokes it, or sets its message aside unread (`on_message_rejected`); the reconciler
also settles any entry whose result is final. What remains is what the reconciler
(`reconciler.py`) checks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

from kombu.utils.json import dumps
from redis.exceptions import NoScriptError

PREFIX = "banktasks:delivery:"
MESSAGES = PREFIX + "messages"
"""Hash: task id → "<queue list>\\0<message as published>"."""
SENT = PREFIX + "sent"
"""Sorted set: task id → when it was last published (Unix time)."""
SUSPECT = PREFIX + "suspect"
"""Sorted set: task id → when a sweep first found it nowhere."""
RESENT = PREFIX + "resent"
"""Hash: task id → how many times the reconciler sent it again."""
STATS = PREFIX + "stats"
"""Hash of totals: resent, given_up, settled_by_sweep, outbox_relayed, sweeps; last_sweep."""
LOCK = PREFIX + "lock"
BATCH_ENTRIES = "_banktasks_ledger_entries"
"""Attribute of a kombu publish batch: the entries of the messages it holds, written
with one HSET and one ZADD when it is flushed."""
OPTION = "banktasks_ledger"
"""The broker transport option that turns the ledger on for an app's connections."""
SEP = "\x00"


# The message and its entry in one atomic step, the message sent once: KEYS = the queue
# list, messages, sent; ARGV = task id, message, now.
PUBLISH = """
redis.call('HSET', KEYS[2], ARGV[1], KEYS[1] .. '\\0' .. ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return redis.call('LPUSH', KEYS[1], ARGV[2])
"""
PUBLISH_SHA = hashlib.sha1(PUBLISH.encode()).hexdigest()


def _publish(client: Any, queue_list: str, task_id: str, payload: str) -> None:
    """Run PUBLISH (by its digest; the script itself the first time a server sees it)."""
    keys_and_args = (queue_list, MESSAGES, SENT, task_id, payload, time.time())
    try:
        client.evalsha(PUBLISH_SHA, 3, *keys_and_args)
    except NoScriptError:
        client.eval(PUBLISH, 3, *keys_and_args)


def entry(queue_list: str, payload: str) -> str:
    """A ledger entry: the list a message went to and the message (as published)."""
    return queue_list + SEP + payload


def split_entry(value: bytes | str) -> tuple[str, str]:
    """(queue list, message) of a ledger entry."""
    text = value.decode() if isinstance(value, bytes) else value
    queue_list, _, payload = text.partition(SEP)
    return queue_list, payload


def _task_id(message: Any) -> str | None:
    headers = message.get("headers") if isinstance(message, dict) else None
    if isinstance(headers, dict) and headers.get("task") and isinstance(headers.get("id"), str):
        return str(headers["id"])
    return None


def install() -> None:
    """Make kombu's Redis channel write the ledger entry with each task message it
    publishes, on connections whose transport options have `banktasks_ledger`.
    Idempotent; other connections publish as kombu does."""
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._put
    if getattr(original, "_banktasks_ledger", False):
        return

    def _put(self: Any, queue: str, message: Any, **kwargs: Any) -> Any:
        task_id = _task_id(message)
        options = getattr(getattr(self.connection, "client", None), "transport_options", None)
        if task_id is None or not (options or {}).get(OPTION):
            return original(self, queue, message, **kwargs)
        pri = self._get_message_priority(message, reverse=False)
        key = self._q_for_pri(queue, pri)
        payload = dumps(message)
        expire = [
            ("pexpire", (self._q_for_pri(queue, p), self._expires[queue]))
            for p in (self.priority_steps if self._expires and queue in self._expires else [])
        ]
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:  # the entries go in once per flush (see _flush)
            entries, sent = batch.__dict__.setdefault(BATCH_ENTRIES, ({}, {}))
            entries[task_id] = entry(key, payload)
            sent[task_id] = time.time()
            for name, args in [("lpush", (key, payload)), *expire]:
                batch.add(name, *args)
            return None
        with self.conn_or_acquire() as client:
            if not expire:
                _publish(client, key, task_id, payload)
                return None
            with client.pipeline(transaction=True) as pipe:  # a queue with x-expires
                pipe.hset(MESSAGES, task_id, entry(key, payload))
                pipe.zadd(SENT, {task_id: time.time()})
                pipe.lpush(key, payload)
                for name, args in expire:
                    getattr(pipe, name)(*args)
                pipe.execute()
        return None

    _put._banktasks_ledger = True  # type: ignore[attr-defined]
    kombu_redis.Channel._put = _put  # type: ignore[method-assign]

    original_flush = kombu_redis.PublishBatch.flush

    def _flush(self: Any) -> Any:
        entries, sent = self.__dict__.pop(BATCH_ENTRIES, ({}, {}))
        if entries and self._buffered:
            self.pipeline.hset(MESSAGES, mapping=entries)
            self.pipeline.zadd(SENT, sent)
            # The entries before the messages: the pipeline is not a transaction, and a
            # cut-off one must leave entries without messages (sent by the reconciler),
            # not messages without entries.
            stack = self.pipeline.command_stack
            stack[:] = stack[-2:] + stack[:-2]
        return original_flush(self)

    kombu_redis.PublishBatch.flush = _flush  # type: ignore[method-assign]


def settle(client: Any, task_ids: Iterable[str]) -> None:
    """Forget these task ids: they reached a final state (or were set aside)."""
    ids = list(task_ids)
    if not ids:
        return
    with client.pipeline(transaction=False) as pipe:
        pipe.hdel(MESSAGES, *ids)
        pipe.zrem(SENT, *ids)
        pipe.zrem(SUSPECT, *ids)
        pipe.hdel(RESENT, *ids)
        pipe.execute()


def tracked(client: Any) -> int:
    """How many submissions the ledger tracks (sent, not settled)."""
    return int(client.zcard(SENT))


def stats(client: Any) -> dict[str, float]:
    """The reconciler's totals (see STATS)."""
    raw = client.hgetall(STATS)
    return {k.decode(): float(v) for k, v in raw.items()}
