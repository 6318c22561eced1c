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

The looks are Lua scripts run on the broker, `CHUNK` entries or `SCAN_ITEMS` queue
items per call: what comes back is a few fields per entry, never the messages, and no
call holds the broker for long.
"""

from __future__ import annotations

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
)

CONFIRM_SECONDS = 5.0
"""How long after a sweep first finds an entry nowhere a later sweep may send it again."""
CHUNK = 1000
"""Ledger entries one INSPECT call looks at."""
SCAN_ITEMS = 5000
"""Queue items one SCAN_LIST call reads."""
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

log = get_logger("banktasks.delivery")

# For each task id in ARGV[2..]: its state (from its result, ARGV[1] = the result key
# prefix), its entry's queue list and delivery tag, whether `unacked` (KEYS[3]) holds that
# tag, and when it was marked suspect. KEYS = messages, suspect, unacked. An id whose
# entry is gone (settled meanwhile) comes back with the queue list false.
INSPECT = """
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local entry = redis.call('HGET', KEYS[1], id)
  if not entry then
    out[#out + 1] = {id, '', false, '', 0, false}
  else
    local meta = redis.call('GET', ARGV[1] .. id)
    local state = ''
    if meta then state = string.match(meta, '"status": *"(%u+)"') or '' end
    local sep = string.find(entry, '\\0', 1, true)
    local tag = string.match(entry, '"delivery_tag": *"([^"]+)"', sep) or ''
    local held = 0
    if tag ~= '' then held = redis.call('HEXISTS', KEYS[3], tag) end
    local suspected = redis.call('ZSCORE', KEYS[2], id)
    out[#out + 1] = {id, state, string.sub(entry, 1, sep - 1), tag, held, suspected}
  end
end
return out
"""

# Which of ARGV[3..]'s delivery tags are among SCAN_ITEMS items of the list KEYS[1] from
# index ARGV[1] (ARGV[2] = how many). Returns {next index or -1, tags found...}. Reading
# from the head in windows misses nothing that stays queued: kombu pushes at the head
# (items move to higher indexes) and pops at the tail.
SCAN_LIST = """
local want = {}
for i = 3, #ARGV do want[ARGV[i]] = true end
local start = tonumber(ARGV[1])
local stop = start + tonumber(ARGV[2]) - 1
local items = redis.call('LRANGE', KEYS[1], start, stop)
local out = {-1}
if #items == tonumber(ARGV[2]) then out[1] = stop + 1 end
for _, item in ipairs(items) do
  local tag = string.match(item, '"delivery_tag": *"([^"]+)"')
  if tag and want[tag] then
    out[#out + 1] = tag
    want[tag] = nil
  end
end
return out
"""

# Send an entry again if it is unchanged (same delivery tag: a retry or a re-send since
# the look changed it): KEYS = messages, sent, suspect, resent, stats; ARGV = task id, the
# delivery tag seen, now. Returns the new re-send count, or 0.
RESEND = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local sep = string.find(current, '\\0', 1, true)
local tag = string.match(current, '"delivery_tag": *"([^"]+)"', sep)
if tag ~= ARGV[2] then return 0 end
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
    queue_list: str
    tag: str
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
    prefix = result_key("-")[:-1]
    missing: list[_Candidate] = []
    for start in range(0, len(ids), CHUNK):
        missing.extend(_inspect(client, ids[start : start + CHUNK], prefix, unacked_key, report))
    by_list: dict[str, list[_Candidate]] = defaultdict(list)
    for candidate in missing:
        by_list[candidate.queue_list].append(candidate)
    nowhere: list[_Candidate] = []
    for queue_list, candidates in by_list.items():
        found = _in_list(client, queue_list, [c.tag for c in candidates if c.tag])
        for candidate in candidates:
            if candidate.tag in found:
                report.queued += 1
                _clear_suspect(client, candidate)
            else:
                nowhere.append(candidate)
    for candidate in nowhere:
        _nowhere(client, candidate, now, max_resends, report)
    return report


def _inspect(
    client: Any, ids: list[str], prefix: Any, unacked_key: str, report: SweepReport
) -> list[_Candidate]:
    """Settle the ids whose result is final; return those neither running nor unacked."""
    rows = client.eval(INSPECT, 3, MESSAGES, SUSPECT, unacked_key, prefix, *ids)
    final: list[str] = []
    missing: list[_Candidate] = []
    for task_id, state, queue_list, tag, held, suspected_at in rows:
        task_id, state = task_id.decode(), state.decode()
        if queue_list is None:  # settled since the ids were read
            continue
        if state in FINAL_STATES:
            final.append(task_id)
            continue
        suspected = float(suspected_at) if suspected_at else None
        candidate = _Candidate(task_id, queue_list.decode(), tag.decode(), suspected)
        if state == "STARTED":  # running (a task acknowledged early holds no unacked copy)
            report.running += 1
            _clear_suspect(client, candidate)
        elif held:
            report.unacked += 1
            _clear_suspect(client, candidate)
        else:
            missing.append(candidate)
    if final:
        settle(client, final)
        client.hincrby(STATS, "settled_by_sweep", len(final))
        report.settled += len(final)
    return missing


def _in_list(client: Any, queue_list: str, tags: list[str]) -> set[str]:
    """Which of `tags` are in the list, read SCAN_ITEMS items per call."""
    found: set[str] = set()
    start = 0
    while tags and start >= 0:
        reply = client.eval(SCAN_LIST, 1, queue_list, start, SCAN_ITEMS, *tags)
        start = int(reply[0])
        found.update(t.decode() for t in reply[1:])
        tags = [t for t in tags if t not in found]
    return found


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
    count = client.eval(RESEND, len(keys), *keys, task_id, candidate.tag, now)
    if count:
        report.resent.append(task_id)
        log.warning(
            "delivery.resent",
            task_id=task_id,
            queue=candidate.queue_list.split("\x06\x16", 1)[0],
            resent=int(count),
        )
