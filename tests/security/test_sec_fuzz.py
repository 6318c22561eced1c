"""A broker-level fuzzer (issue 15): generated malformed items pushed at ONE live worker.

Hypothesis generates items the way an attacker with broker access could push them
(`LPUSH <queue> <item>`): garbage bytes, truncated JSON, JSON that is not an object, and
mutations of a valid Celery protocol-2 message for a registered task: a wrong type at
every level (envelope, headers, properties, delivery info, body), bad headers, a body that
is not base64, not JSON or of the wrong shape, and strings that bring the item near the
size limit (over it, or under it with another defect). Every generated item is bad, and
carries a unique marker (first in the item, and its task id when it has one).

After each batch: the worker process is the same one and still up, a valid task sent
afterwards completes, and every item of the batch ended as exactly one dead letter (the
marker is in the row's excerpt), with nothing left in a queue or the unacknowledged set.

`BANKTASKS_FUZZ_MESSAGES` sets how many items (default 300; `make fuzz` runs 10,000).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from banktasks_testing import wait_for
from core.default_plugins.deadletters import FailedTask
from core.poison import max_item_bytes
from tests.security.test_sec_poison import (
    MAX_MESSAGE_BYTES,
    TASK,
    Harness,
    broker_leftovers,
    envelope,
    harness,
    rss_mb,
    serve_valid_task,
)

pytestmark = pytest.mark.e2e

__all__ = ["harness"]  # the module-scoped worker environment, shared with test_sec_poison

MESSAGES = int(os.environ.get("BANKTASKS_FUZZ_MESSAGES", "300"))
BATCH = 50
QUEUES = ["acme-fast", "acme_rules", "celery"]
ITEM_LIMIT = max_item_bytes(MAX_MESSAGE_BYTES)
BROADCAST_BYTES = 16 * 1024
"""Bigger broadcasts are not published: the broker itself disconnects a subscriber that
falls megabytes behind (client-output-buffer-limit pubsub), which is not the worker's doing."""
MARKER = "!fuzz"
"""The first key of every generated envelope (it sorts first in canonical JSON too)."""

# --- values of the wrong type ----------------------------------------------------------

keys = st.text(string.ascii_letters + "_-.", max_size=8).filter(lambda k: not k.startswith("__"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=8,
)


def wrong(*types: type, none_ok: bool = False) -> st.SearchStrategy[Any]:
    """A JSON value that is not of `types` (null only with `none_ok`)."""

    def bad(value: Any) -> bool:
        if value is None:
            return none_ok
        if isinstance(value, bool):
            return bool not in types
        return not isinstance(value, types)

    return json_values.filter(bad)


not_a_date = st.text(max_size=20).map(lambda t: "x" + t)
bad_id = (
    wrong(str)
    | st.just("")
    | st.text(string.ascii_letters, min_size=65, max_size=90)
    | st.text(string.ascii_letters, min_size=1, max_size=10).map(lambda t: t + " " + t)
)
bad_task_name = wrong(str) | st.just("") | st.text(max_size=30).map(lambda t: "nope." + t)
bad_timelimit = (
    wrong(list)
    | st.lists(st.none() | st.integers(0, 10), max_size=5).filter(lambda v: len(v) != 2)
    | st.tuples(wrong(int, float, none_ok=False) | st.integers(max_value=-1), st.none()).map(list)
)
bad_priority = wrong(int) | st.integers(max_value=-1) | st.integers(min_value=256)

# --- bodies (the decoded bytes inside base64) ------------------------------------------


def triple(args: Any = (), kwargs: Any = None, embed: Any = None) -> bytes:
    return json.dumps([list(args), {"x": 1} if kwargs is None else kwargs, embed or {}]).encode()


bad_triples = st.one_of(
    wrong(list).map(lambda v: json.dumps(v).encode()),
    st.lists(json_values, max_size=6)
    .filter(lambda v: len(v) != 3)
    .map(lambda v: json.dumps(v).encode()),
    wrong(list).map(lambda a: json.dumps([a, {}, {}]).encode()),
    wrong(dict).map(lambda k: json.dumps([[], k, {}]).encode()),
    wrong(dict, none_ok=False).map(lambda e: json.dumps([[], {"x": 1}, e]).encode()),
    st.tuples(
        keys.filter(lambda k: k not in {"callbacks", "errbacks", "chain", "chord"}), json_values
    ).map(lambda kv: triple(embed={kv[0]: kv[1]})),
    st.tuples(st.sampled_from(["callbacks", "errbacks", "chain"]), wrong(list)).map(
        lambda kv: triple(embed={kv[0]: kv[1]})
    ),
    st.integers(0, len(triple()) - 1).map(lambda n: triple()[:n]),  # truncated
    st.binary(max_size=60).map(lambda b: b"\x00" + b),  # not JSON, maybe not UTF-8
)
bad_bodies = st.one_of(
    bad_triples.map(lambda raw: base64.b64encode(raw).decode()),
    st.text(max_size=40).map(lambda t: t + "%"),  # not base64
    st.text(string.ascii_letters, min_size=1, max_size=40).filter(lambda t: len(t) % 4 == 1),
    wrong(str),
)

# --- mutations of a valid envelope -----------------------------------------------------

Where = tuple[str, ...]
DELETE = object()

MUTATIONS: list[tuple[Where, st.SearchStrategy[Any]]] = [
    # first (hypothesis favours the first choices), twice: what only the consumer's
    # last checks see (the body's shape, an unknown task) needs everything else intact
    (("body",), bad_triples.map(lambda raw: base64.b64encode(raw).decode())),
    (("body",), bad_triples.map(lambda raw: base64.b64encode(raw).decode())),
    (("headers", "task"), st.text(max_size=30).map(lambda t: "nope." + t)),
    (
        ("content-type",),
        wrong(str)
        | st.sampled_from(
            [
                "application/x-python-serialize",
                "text/plain",
                "application/data",
                "",
                "application/json; charset=utf-8",
            ]
        ),
    ),
    (("headers", "task"), bad_task_name | st.just(DELETE)),
    (("headers", "id"), bad_id | st.just(DELETE)),
    (("headers", "eta"), wrong(str) | not_a_date),
    (("headers", "expires"), wrong(str) | not_a_date),
    (("headers", "timelimit"), bad_timelimit),
    (("headers", "retries"), wrong(int)),
    (("headers", "shadow"), wrong(str)),
    (("headers", "root_id"), wrong(str)),
    (("headers", "parent_id"), wrong(str)),
    (("headers", "group"), wrong(str)),
    (("headers", "argsrepr"), wrong(str)),
    (("headers", "kwargsrepr"), wrong(str)),
    (("headers", "ignore_result"), wrong(bool)),
    (("headers", "stamps"), wrong(dict)),
    (("headers", "compression"), json_values.filter(lambda v: v is not None)),
    (
        ("properties", "delivery_tag"),
        wrong(str) | st.just("") | st.just("t" * 200) | st.just(DELETE),
    ),
    (("properties", "delivery_info"), wrong(dict, none_ok=True) | st.just(DELETE)),
    (("properties", "delivery_info", "exchange"), wrong(str) | st.just(DELETE)),
    (("properties", "delivery_info", "routing_key"), wrong(str) | st.just(DELETE)),
    (
        ("properties", "body_encoding"),
        json_values.filter(lambda v: v != "base64") | st.just(DELETE),
    ),
    (("properties", "priority"), bad_priority),
    (("body",), bad_bodies | st.just(DELETE)),
    (("headers",), wrong(dict, none_ok=True) | st.just(DELETE)),
    (("properties",), wrong(dict, none_ok=True) | st.just(DELETE)),
    (("content-encoding",), wrong(str)),
]
"""(where, a value that makes the message unusable there); DELETE removes the field."""

noise = st.dictionaries(keys.map(lambda k: "x-" + k), json_values, max_size=3)
"""Harmless extra headers (their names cannot be ones Celery reads)."""


def apply(message: dict[str, Any], path: Where, value: Any) -> None:
    """Set (or delete) `path` in `message`, if its parent is still an object."""
    target: Any = message
    for key in path[:-1]:
        target = target.get(key) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        return
    if value is DELETE:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = copy.deepcopy(value)


def padded(item: Callable[[int], bytes], target: int) -> bytes:
    """`item(n)` with `n` chosen so the result is `target` bytes long (about)."""
    base = len(item(0))
    return item(max(0, target - base))


@dataclass
class Poison:
    """One generated bad item: `build(marker)` gives its bytes; `label` says what it is."""

    label: str
    queue: str
    build: Callable[[str], bytes]

    def __repr__(self) -> str:
        return f"Poison({self.label!r}, {self.queue!r})"


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> Poison:
    many = draw(st.sampled_from([1, 1, 2, 3]))  # one defect alone half of the time
    chosen = draw(st.lists(st.sampled_from(range(len(MUTATIONS))), min_size=1, max_size=many))
    changes = [(MUTATIONS[i][0], draw(MUTATIONS[i][1])) for i in chosen]
    extra = draw(noise)
    near_limit = draw(st.none() | st.integers(ITEM_LIMIT - 3000, ITEM_LIMIT + 3000))

    def build(marker: str) -> bytes:
        message = {MARKER: marker, **envelope(TASK, task_id=marker)}
        message["headers"].update(extra)
        for path, value in changes:
            apply(message, path, value)

        def render(pad: int) -> bytes:
            if pad:
                message[MARKER] = marker + " " + "p" * pad
            return json.dumps(message).encode()

        return render(0) if near_limit is None else padded(render, near_limit)

    label = "; ".join(
        f"{'.'.join(p)}={'<deleted>' if v is DELETE else repr(v)[:40]}" for p, v in changes
    )
    if near_limit is not None:
        label += f"; padded to {near_limit} bytes"
    return Poison(label, draw(st.sampled_from(QUEUES)), build)


@st.composite
def raw_items(draw: st.DrawFn) -> Poison:
    shape = draw(st.sampled_from(["garbage", "huge garbage", "truncated", "array", "string"]))
    garbage = draw(st.binary(max_size=200))
    size = draw(st.integers(ITEM_LIMIT - 3000, ITEM_LIMIT + 3000))
    value = draw(json_values)
    cut = draw(st.floats(0, 1, exclude_max=True))

    def build(marker: str) -> bytes:
        head = json.dumps(marker).encode()
        if shape == "garbage":
            return head + b"\x00" + garbage
        if shape == "huge garbage":
            return padded(lambda n: head + b"\x00" * (n + 1), size)
        if shape == "truncated":
            whole = json.dumps({MARKER: marker, **envelope(TASK, task_id=marker)}).encode()
            keep = len(json.dumps({MARKER: marker})) - 1
            return whole[: keep + int(cut * (len(whole) - keep))]
        if shape == "array":
            return json.dumps([marker, value]).encode()
        return json.dumps(marker + " " + json.dumps(value)).encode()

    return Poison(shape, draw(st.sampled_from(QUEUES)), build)


poison = st.one_of(mutated_envelopes(), mutated_envelopes(), raw_items())
"""Two thirds are mutated envelopes, one third raw items."""


# --- the test ---------------------------------------------------------------------------


def markers() -> Callable[[], str]:
    """Unique markers of lowercase letters (digits could be masked as account numbers)."""
    counter = count()
    run = "".join(chr(ord("a") + int(c)) for c in str(int(time.time()))[-6:])

    def next_marker() -> str:
        n, letters = next(counter), ""
        while True:
            n, r = divmod(n, 26)
            letters = chr(ord("a") + r) + letters
            if not n:
                return f"fz{run}q{letters}-"  # the dash: no marker is a prefix of another

    return next_marker


def dead_letters_after(app: Any, last_id: int) -> list[FailedTask]:
    with app.runtime.db.session() as session:
        query = select(FailedTask).where(FailedTask.id > last_id).order_by(FailedTask.id)
        return list(session.scalars(query))


@pytest.mark.slow
def test_generated_poison_never_stops_the_worker(harness: Harness) -> None:
    app = harness.app
    worker = harness.live_worker()
    workers_before = len(harness.workers)
    client = app.redis_client()
    next_marker = markers()
    totals: Counter[str] = Counter()
    state = {"last_id": max((r.id for r in dead_letters_after(app, 0)), default=0), "x": 0}
    started, memory = time.monotonic(), rss_mb(worker)

    @settings(
        max_examples=max(1, -(-MESSAGES // BATCH)),
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=st.lists(poison, min_size=BATCH, max_size=BATCH))
    def run(batch: list[Poison]) -> None:
        sent: dict[str, Poison] = {}
        with client.pipeline(transaction=False) as pipe:
            for item in batch:
                marker = next_marker()
                sent[marker] = item
                pipe.lpush(item.queue, item.build(marker))
            pipe.execute()
        state["x"] += 1
        serve_valid_task(app, worker, state["x"])
        rows = wait_for(
            lambda: (r := dead_letters_after(app, state["last_id"])) and len(r) >= len(sent) and r,
            60,
            f"{len(sent)} dead letters",
        )
        found = Counter(m for row in rows for m in sent if m in row.error)
        missing = {m: sent[m] for m in sent if found[m] != 1}
        assert not missing and len(rows) == len(sent), (
            f"{len(rows)} dead letters for {len(sent)} messages; not exactly one for: "
            + "; ".join(f"{sent[m]!r} x{found[m]}" for m in list(missing)[:5])
        )
        wait_for(lambda: not broker_leftovers(app), 10, "the queues and unacked set to empty")
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        state["last_id"] = rows[-1].id
        totals["messages"] += len(sent)
        totals.update(row.reason for row in rows)

    run()
    elapsed = time.monotonic() - started
    assert len(harness.workers) == workers_before and worker.proc.poll() is None
    assert totals["messages"] >= MESSAGES
    assert "Unrecoverable error" not in worker.log()
    assert "Connection to broker lost" not in worker.log()
    dead = sum(v for k, v in totals.items() if k != "messages")
    print(
        f"\nfuzz: {totals['messages']} messages, {dead} dead letters "
        f"({', '.join(f'{k}: {v}' for k, v in totals.items() if k != 'messages')}), "
        f"worker exits: 0, {elapsed:.0f}s; the worker's memory: {memory:.0f} MB before, "
        f"{rss_mb(worker):.0f} MB after"
    )


@pytest.mark.slow
def test_generated_broadcasts_never_stop_the_worker(harness: Harness) -> None:
    """The same items published on the remote-control channel (pub/sub: a broadcast is
    never stored, so nothing is dead-lettered): the worker drops what it cannot deliver,
    without reconnecting, keeps serving tasks and still answers remote control."""
    app = harness.app
    worker = harness.live_worker()
    workers_before = len(harness.workers)
    client = app.redis_client()
    channel = f"/{client.connection_pool.connection_kwargs.get('db', 0)}.celery.pidbox"
    wait_for(lambda: client.execute_command("PUBSUB", "NUMPAT"), 10, "the worker to subscribe")
    next_marker = markers()
    state = {"published": 0, "x": 1000}

    @settings(
        max_examples=max(1, -(-2 * MESSAGES // 3 // BATCH)),  # about half are small enough
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=st.lists(poison, min_size=BATCH, max_size=BATCH))
    def run(batch: list[Poison]) -> None:
        for item in batch:
            raw = item.build(next_marker())
            if len(raw) > BROADCAST_BYTES:
                continue
            client.publish(channel, raw)  # (0 listeners while Celery resets its mailbox)
            state["published"] += 1
        state["x"] += 1
        serve_valid_task(app, worker, state["x"])
        wait_for(lambda: app.control.ping(timeout=1, limit=1), 15, "the worker to answer a ping")

    run()
    assert len(harness.workers) == workers_before and worker.proc.poll() is None
    assert state["published"] >= MESSAGES // 5
    assert "Connection to broker lost" not in worker.log()
    assert "Unrecoverable error" not in worker.log()
    print(f"\nfuzz: {state['published']} broadcasts, worker exits: 0")
