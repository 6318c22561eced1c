"""The reconciler: find tracked submissions that are nowhere, and send them again.

One sweep (behind a lock on the broker, so sweeps never overlap) looks at every
ledger entry sent more than `grace` seconds ago:

1. its result is final (SUCCESS, FAILURE, REVOKED) → settled; its state is STARTED
   → running, alive;
2. its message is unacknowledged (kombu's `unacked` hash has its delivery tag: a
   worker holds it, runs it, or waits for its eta; a dead worker's comes back after
   the visibility timeout) → alive;
3. its message is still in its queue list (one server-side scan per list, only
   for the entries not found above) → alive;
4. else it is nowhere: taken off the queue by a worker or a broker that died before
   the unacknowledged copy was written (kombu's BRPOP, then a second command). The
   first sweep that finds it nowhere marks it suspect; a sweep at least
   `CONFIRM_SECONDS` later that still finds it nowhere sends the same message again
   (same task id, arguments and headers) to the same list, atomically with the
   ledger (only if the entry did not change meanwhile). The two looks make a
   message in flight between the queue and the unacked hash, or between two sweeps'
   reads, never count as lost.

An entry sent again `max_resends` times and still lost is given up: settled, logged
as an error and counted. Every re-send is logged (`delivery.resent`) and counted.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from core import get_logger
from core.default_plugins.delivery.ledger import (
    LOCK,
    MESSAGES,
    RESENT,
    SENT,
    STATS,
    SUSPECT,
    settle,
    split_entry,
)

CONFIRM_SECONDS = 5.0
"""How long after a sweep first finds an entry nowhere a later sweep may send it again."""
CHUNK = 1000
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
DELIVERY_TAG = re.compile(r'"delivery_tag": "([^"]+)"')

log = get_logger("banktasks.delivery")

# Which of ARGV's delivery tags are in the list KEYS[1]; read server-side, 1,000 items at
# a time, so a long queue is not copied to the client.
SCAN_LIST = """
local want = {}
for i = 1, #ARGV do want[ARGV[i]] = true end
local found = {}
local n = redis.call('LLEN', KEYS[1])
for start = 0, n - 1, 1000 do
  local items = redis.call('LRANGE', KEYS[1], start, start + 999)
  for _, item in ipairs(items) do
    local tag = string.match(item, '"delivery_tag": "([^"]+)"')
    if tag and want[tag] then
      found[#found + 1] = tag
      want[tag] = nil
    end
  end
end
return found
"""

# Send an entry again if it is unchanged: KEYS = messages, sent, suspect, resent, stats;
# ARGV = task id, the entry as read, now. Returns the new re-send count, or 0.
RESEND = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current ~= ARGV[2] then return 0 end
local sep = string.find(current, '\\0', 1, true)
redis.call('LPUSH', string.sub(current, 1, sep - 1), string.sub(current, sep + 1))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'resent', 1)
return redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class SweepReport:
    """What one sweep found and did."""

    tracked: int = 0
    checked: int = 0
    settled: int = 0
    unacked: int = 0
    queued: int = 0
    running: int = 0
    suspect: int = 0
    resent: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False
    """True when another sweep held the lock (nothing was looked at)."""

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (JSON-safe)."""
        return asdict(self)


@dataclass
class _Candidate:
    task_id: str
    raw: bytes
    queue_list: str
    tag: str | None
    suspected_at: float | None


def sweep(
    client: Any,
    *,
    grace: float,
    max_resends: int,
    result_key: Callable[[str], Any],
    unacked_key: str = "unacked",
    lock_seconds: int = 300,
    now: float | None = None,
) -> SweepReport:
    """Reconcile the ledger once (see the module docstring); returns what it did."""
    token = uuid.uuid4().hex
    if not client.set(LOCK, token, nx=True, ex=lock_seconds):
        return SweepReport(skipped=True)
    started = time.monotonic()
    try:
        report = _sweep(client, grace, max_resends, result_key, unacked_key, now or time.time())
    finally:
        client.eval(RELEASE, 1, LOCK, token)
    report.seconds = round(time.monotonic() - started, 4)
    client.hincrby(STATS, "sweeps", 1)
    client.hset(STATS, "last_sweep", time.time())
    return report


def _sweep(
    client: Any,
    grace: float,
    max_resends: int,
    result_key: Callable[[str], Any],
    unacked_key: str,
    now: float,
) -> SweepReport:
    report = SweepReport(tracked=int(client.zcard(SENT)))
    ids = [i.decode() for i in client.zrangebyscore(SENT, "-inf", now - grace)]
    report.checked = len(ids)
    missing: list[_Candidate] = []
    for start in range(0, len(ids), CHUNK):
        missing.extend(
            _not_settled_nor_unacked(
                client, ids[start : start + CHUNK], result_key, unacked_key, report
            )
        )
    by_list: dict[str, list[_Candidate]] = defaultdict(list)
    for candidate in missing:
        by_list[candidate.queue_list].append(candidate)
    nowhere: list[_Candidate] = []
    for queue_list, candidates in by_list.items():
        tags = [c.tag for c in candidates if c.tag]
        found = set()
        if tags:
            found = {t.decode() for t in client.eval(SCAN_LIST, 1, queue_list, *tags)}
        for candidate in candidates:
            if candidate.tag in found:
                report.queued += 1
                _clear_suspect(client, candidate)
            else:
                nowhere.append(candidate)
    for candidate in nowhere:
        _nowhere(client, candidate, now, max_resends, report)
    return report


def _not_settled_nor_unacked(
    client: Any,
    ids: list[str],
    result_key: Callable[[str], Any],
    unacked_key: str,
    report: SweepReport,
) -> list[_Candidate]:
    with client.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.get(result_key(task_id))
            pipe.hget(MESSAGES, task_id)
            pipe.zscore(SUSPECT, task_id)
        replies = pipe.execute()
    final: list[str] = []
    open_: list[_Candidate] = []
    for i, task_id in enumerate(ids):
        meta, raw, suspected_at = replies[3 * i : 3 * i + 3]
        if raw is None:  # settled since the ids were read
            continue
        state = _state(meta) if meta is not None else None
        if state in FINAL_STATES:
            final.append(task_id)
            continue
        if state == "STARTED":  # running (a task acknowledged early holds no unacked copy)
            report.running += 1
            if suspected_at is not None:
                client.zrem(SUSPECT, task_id)
            continue
        queue_list, payload = split_entry(raw)
        match = DELIVERY_TAG.search(payload)
        tag = match.group(1) if match else None
        open_.append(_Candidate(task_id, raw, queue_list, tag, suspected_at))
    if final:
        settle(client, final)
        client.hincrby(STATS, "settled_by_sweep", len(final))
        report.settled += len(final)
    with client.pipeline(transaction=False) as pipe:
        for candidate in open_:
            pipe.hexists(unacked_key, candidate.tag or "")
        held = pipe.execute()
    missing: list[_Candidate] = []
    for candidate, is_held in zip(open_, held, strict=True):
        if is_held:
            report.unacked += 1
            _clear_suspect(client, candidate)
        else:
            missing.append(candidate)
    return missing


def _state(meta: bytes) -> str | None:
    try:
        value = json.loads(meta)
    except ValueError:
        return None
    return value.get("status") if isinstance(value, dict) else None


def _clear_suspect(client: Any, candidate: _Candidate) -> None:
    if candidate.suspected_at is not None:
        client.zrem(SUSPECT, candidate.task_id)


def _nowhere(
    client: Any, candidate: _Candidate, now: float, max_resends: int, report: SweepReport
) -> None:
    task_id = candidate.task_id
    if candidate.suspected_at is None or now - candidate.suspected_at < CONFIRM_SECONDS:
        if candidate.suspected_at is None:
            client.zadd(SUSPECT, {task_id: now})
        report.suspect += 1
        return
    sent_before = int(client.hget(RESENT, task_id) or 0)
    if sent_before >= max_resends:
        settle(client, [task_id])
        client.hincrby(STATS, "given_up", 1)
        report.given_up.append(task_id)
        log.error(
            "delivery.given_up",
            task_id=task_id,
            resent=sent_before,
            hint="the message was lost again after each re-send; see docs/reliability.md",
        )
        return
    keys = (MESSAGES, SENT, SUSPECT, RESENT, STATS)
    count = client.eval(RESEND, len(keys), *keys, task_id, candidate.raw, now)
    if count:
        report.resent.append(task_id)
        log.warning(
            "delivery.resent",
            task_id=task_id,
            queue=candidate.queue_list.split("\x06\x16", 1)[0],
            resent=int(count),
        )
