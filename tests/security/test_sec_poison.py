"""Poison messages (issue 15, findings 1 and 9, the worker side): whatever item someone with
broker access pushes onto a queue, the worker stays up, keeps serving valid tasks, and sets
the item aside once, as exactly one dead letter with a reason; nothing is left in the queue
or in the unacknowledged set, so a worker started afterwards does not meet it again.

Each kind is pushed raw (`LPUSH <queue> <item>`, the way kombu's Redis transport stores a
message) at a real worker process. The module shares one environment and one worker (a
worker's start and stop take seconds); a test finding it dead starts another, so one
failure does not hide the others.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import sys
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import select

from banktasks_testing import WorkerProcess, wait_for
from banktasks_testing.plugin import clear_banktasks_env
from core.default_plugins.deadletters import (
    INVALID,
    MALFORMED,
    OVERSIZED,
    REJECTED,
    TRUNCATED,
    UNDECODABLE,
    UNKNOWN_TASK,
    FailedTask,
    failed_group,
    rejected_key,
)
from tests.conftest import HERE, install_dist

pytestmark = pytest.mark.e2e

TASK = "acme_rules.add"
QUEUE = "acme-fast"
MAX_MESSAGE_BYTES = 64 * 1024
"""The workers of these tests accept task messages up to 64 KiB of JSON."""


@dataclass
class Harness:
    """One environment (broker, SQLite file, the `acme_rules` test plugin) and its worker."""

    app: Any
    env: dict[str, str]
    folder: Path
    worker: WorkerProcess | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self) -> WorkerProcess:
        """Start a new worker process (the old one, if any, is stopped: warm shutdown)."""
        if self.worker is not None:
            self.worker.stop()
        log = self.folder / f"worker{len(self.workers)}.log"
        self.worker = WorkerProcess({**os.environ, **self.env}, log).start()
        self.workers.append(self.worker)
        return self.worker

    def live_worker(self) -> WorkerProcess:
        """The running worker; a new one if there is none or it died (in another test)."""
        if self.worker is None or self.worker.proc is None or self.worker.proc.poll() is not None:
            return self.start_worker()
        return self.worker


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory, broker_url: str, request: pytest.FixtureRequest
) -> Iterator[Harness]:
    """Like the kit's `e2e` fixture with the `acme_rules` plugin, for a whole module."""
    from core import create_app, load_settings
    from core.celery import reset_default_app

    folder = tmp_path_factory.mktemp("poison")
    site = install_dist(
        folder / "site",
        "acme_rules",
        "acme-rules",
        HERE / "acme_plugin_src.py",
        {"acme_rules": "acme_rules"},
    )
    work = folder / "work"
    work.mkdir()
    root = [str(request.config.rootpath), str(site)]
    env = {
        "BANKTASKS_VAR_DIR": str(folder / "var"),
        "DATABASE_URL": f"sqlite:///{folder / 'var' / 'banking.db'}",
        "BANKTASKS_CONFIG": str(work / "banktasks.toml"),
        "REDIS_URL": broker_url,
        "BANKTASKS_PLUGINS": "acme_rules",
        "BANKTASKS_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        "PYTHONPATH": os.pathsep.join([*root, os.environ.get("PYTHONPATH", "")]),
    }
    with pytest.MonkeyPatch.context() as mp:
        clear_banktasks_env(mp)
        mp.chdir(work)
        for key, value in env.items():
            mp.setenv(key, value)
        mp.syspath_prepend(str(site))
        importlib.invalidate_caches()
        redis.Redis.from_url(broker_url).flushall()
        reset_default_app()
        app = create_app(load_settings())
        app.runtime.db.create_all()
        harness = Harness(app, env, folder)
        try:
            yield harness
        finally:
            for worker in harness.workers:
                worker.stop()
            app.runtime.db.dispose()
            reset_default_app()
            sys.modules.pop("acme_rules", None)


def body_of(args: Any = (), kwargs: Any = None, embed: Any = None) -> str:
    """A protocol-2 body `[args, kwargs, embed]`, JSON then base64 (as kombu stores it)."""
    triple = [list(args), {"x": 1} if kwargs is None else kwargs, embed or {}]
    return b64(json.dumps(triple).encode())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def envelope(task: str = TASK, task_id: str | None = None, queue: str = QUEUE) -> dict[str, Any]:
    """A valid Celery protocol-2 message for `task`, as kombu's Redis transport stores it."""
    task_id = task_id or str(uuid.uuid4())
    return {
        "body": body_of(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": "{'x': 1}",
            "origin": "attacker@broker",
            "ignore_result": False,
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": str(uuid.uuid4()),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def fingerprint(raw: bytes) -> str:
    """The dead-letter id of a message whose task id cannot be read: sha256 of the item."""
    return hashlib.sha256(raw).hexdigest()


def dead_letters(app: Any) -> list[FailedTask]:
    with app.runtime.db.session() as session:
        return list(session.scalars(select(FailedTask).order_by(FailedTask.id)))


def broker_leftovers(app: Any) -> dict[str, int]:
    """Messages still waiting in any queue or held unacknowledged on the broker."""
    client = app.redis_client()
    left = {
        key.decode(): int(client.llen(key))
        for key in client.scan_iter()
        if client.type(key) == b"list" and client.llen(key)
    }
    for key in ("unacked", "unacked_index"):
        if client.exists(key):
            left[key] = int(client.zcard(key) if key.endswith("index") else client.hlen(key))
    return {key: count for key, count in left.items() if count}


def rss_mb(worker: WorkerProcess) -> float:
    """Resident memory of the worker's main process (the one that reads the broker), MB."""
    assert worker.proc is not None
    status = Path(f"/proc/{worker.proc.pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def serve_valid_task(app: Any, worker: Any, x: int) -> None:
    """The worker is up and still consuming: a valid task sent now completes."""
    assert worker.proc.poll() is None, f"the worker exited:\n{worker.log()[-3000:]}"
    result = app.tasks[TASK].delay(x=x)
    try:
        assert result.get(timeout=20) == {"sum": x + 1}
    except Exception as exc:
        raise AssertionError(f"{exc!r}; worker log:\n{worker.log()[-3000:]}") from None
    assert worker.proc.poll() is None


@dataclass
class Kind:
    """One kind of poison: how to build the raw item and what the dead letter says."""

    build: Callable[[str], bytes]  # task id -> raw item
    reason: str
    keyed_by_id: bool  # True: the dead letter's task_id is the message's id
    task_name: str = TASK


def item(mutate: Callable[[dict[str, Any]], Any]) -> Callable[[str], bytes]:
    """A builder: a valid envelope changed by `mutate` (which may return a replacement)."""

    def build(task_id: str) -> bytes:
        message = envelope(task_id=task_id)
        replaced = mutate(message)
        return json.dumps(message if replaced is None else replaced).encode()

    return build


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(message: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = message
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


def _headers_in_a_list(message: dict[str, Any]) -> None:
    message["headers"] = [message["headers"]]


def _drop_task(message: dict[str, Any]) -> None:
    del message["headers"]["task"]


def _compressed(message: dict[str, Any]) -> None:
    message["headers"]["compression"] = "application/x-gzip"
    message["body"] = b64(zlib.compress(b"[[], {}, {}]" + b" " * 100_000))


KINDS: dict[str, Kind] = {
    "not json": Kind(lambda tid: b"{'task': 'acme_rules.add', " + tid.encode(), UNDECODABLE, False),
    "not utf-8": Kind(lambda tid: b'{"id": "\xff\xfe' + tid.encode() + b'"}', UNDECODABLE, False),
    "truncated json": Kind(lambda tid: item(lambda m: None)(tid)[:-40], UNDECODABLE, False),
    "envelope not an object": Kind(item(lambda m: [m]), MALFORMED, False),
    "headers not an object": Kind(item(_headers_in_a_list), MALFORMED, False),
    "properties not an object": Kind(item(_set("properties", "x")), MALFORMED, True),
    "delivery info missing": Kind(item(_set("properties.delivery_info", None)), MALFORMED, True),
    "body not base64": Kind(item(_set("body", "%%% not base64 %%%")), UNDECODABLE, True),
    "body not json": Kind(item(_set("body", b64(b"[[], {'x': 1}"))), UNDECODABLE, True),
    "body a json object": Kind(item(_set("body", b64(b'{"x": 1}'))), MALFORMED, True),
    "body wrong shape": Kind(item(_set("body", b64(b'[{"x": 1}, [], {}]'))), MALFORMED, True),
    "body compressed": Kind(item(_compressed), MALFORMED, True),
    "body pickled": Kind(
        item(_set("content-type", "application/x-python-serialize")), UNDECODABLE, True
    ),
    "unknown task": Kind(
        item(_set("headers.task", "acme_rules.nope")), UNKNOWN_TASK, True, "acme_rules.nope"
    ),
    "task not a string": Kind(
        item(_set("headers.task", ["acme_rules.add"])), MALFORMED, True, "unknown"
    ),
    "missing task": Kind(item(_drop_task), MALFORMED, True, "unknown"),
    "bad eta": Kind(item(_set("headers.eta", "next tuesday")), MALFORMED, True),
    "bad time limit": Kind(item(_set("headers.timelimit", "soon")), MALFORMED, True),
    "oversized": Kind(
        item(_set("headers.kwargsrepr", "x" * (4 * MAX_MESSAGE_BYTES))), OVERSIZED, False
    ),
}


def new_rows(app: Any, known: set[int]) -> list[FailedTask]:
    return [row for row in dead_letters(app) if row.id not in known]


def push(harness: Harness, kind: str) -> tuple[str, bytes, str]:
    """Push one item of `kind`; return (its task id, the item, its dead letter's task_id)."""
    spec = KINDS[kind]
    task_id = str(uuid.uuid4())
    raw = spec.build(task_id)
    harness.app.redis_client().lpush(QUEUE, raw)
    return task_id, raw, rejected_key(task_id if spec.keyed_by_id else fingerprint(raw))


@pytest.mark.parametrize("kind", list(KINDS))
def test_poison_message_is_dead_lettered_once_and_the_worker_keeps_serving(
    harness: Harness, kind: str
) -> None:
    spec = KINDS[kind]
    app, worker = harness.app, harness.live_worker()
    known = {row.id for row in dead_letters(app)}

    task_id, _raw, key = push(harness, kind)
    serve_valid_task(app, worker, 2)  # the poison was read before this one (one queue, FIFO)

    rows = wait_for(lambda: new_rows(app, known), 15, f"the dead letter of {kind!r}")
    assert [row.task_id for row in rows] == [key], [(r.task_id, r.reason) for r in rows]
    row = rows[0]
    assert row.reason == spec.reason, (row.reason, row.error)
    assert row.task_name == (spec.task_name if spec.keyed_by_id else "unknown")
    assert (row.kwargs, row.attempts, row.error_type) == ({}, 0, "RejectedMessage")
    assert len(row.error) < 8192, "the dead letter is bounded"
    wait_for(lambda: not broker_leftovers(app), 10, "the queue and unacked set to be empty")
    assert "Unrecoverable error" not in worker.log()
    assert len(new_rows(app, known)) == 1
    if not spec.keyed_by_id:  # logged: what was wrong, never the message itself
        assert task_id not in worker.log()


def test_a_restarted_worker_meets_none_of_them(harness: Harness) -> None:
    """Every kind at once, then a warm restart: nothing was restored to a queue, nothing
    is dead-lettered twice, and the new worker serves valid tasks."""
    app, worker = harness.app, harness.live_worker()
    known = {row.id for row in dead_letters(app)}
    keys = {push(harness, kind)[2]: KINDS[kind].reason for kind in KINDS}
    serve_valid_task(app, worker, 4)
    rows = wait_for(
        lambda: len(new_rows(app, known)) >= len(keys) and new_rows(app, known), 30, "dead letters"
    )
    assert {row.task_id: row.reason for row in rows} == keys
    wait_for(lambda: not broker_leftovers(app), 10, "the queue and unacked set to be empty")

    second = harness.start_worker()  # the first one stops (warm shutdown) first
    serve_valid_task(app, second, 5)
    wait_for(lambda: not broker_leftovers(app), 10, "the queue and unacked set to stay empty")
    assert len(new_rows(app, known)) == len(keys), "a message came back"
    assert "Unrecoverable error" not in worker.log() + second.log()


BROADCASTS = [
    b"[1, 2]",
    b'"a string"',
    b'{"body": 5}',
    b'{"properties": {}}',
    b"[" * 100_000,  # nested deeper than Python's JSON decoder goes
]
"""Items published on the remote-control channel that kombu cannot deliver."""


def test_a_bad_broadcast_is_dropped_and_the_worker_keeps_serving(harness: Harness) -> None:
    """Remote control (`celery.pidbox`) comes through pub/sub: one PUBLISH reaches every
    worker. What cannot be delivered is dropped (a broadcast is never stored, so there is
    nothing to dead-letter), without a reconnection."""
    app, worker = harness.app, harness.live_worker()
    client = app.redis_client()
    channel = f"/{client.connection_pool.connection_kwargs.get('db', 0)}.celery.pidbox"
    wait_for(lambda: client.execute_command("PUBSUB", "NUMPAT"), 10, "the worker to subscribe")
    dropped = worker.log().count("broadcast_dropped")
    for item in BROADCASTS:
        assert client.publish(channel, item) >= 1, "no worker listens"
    serve_valid_task(app, worker, 6)
    wait_for(
        lambda: worker.log().count("broadcast_dropped") == dropped + len(BROADCASTS),
        10,
        "the broadcasts to be dropped",
    )
    assert "Connection to broker lost" not in worker.log()


def test_a_message_is_set_aside_even_when_the_dead_letter_store_is_down(harness: Harness) -> None:
    app, worker = harness.app, harness.live_worker()
    FailedTask.__table__.drop(app.runtime.db.engine)
    try:
        task_id, _raw, key = push(harness, "body a json object")
        serve_valid_task(app, worker, 7)
        line = wait_for(
            lambda: next(
                (
                    x
                    for x in worker.log().splitlines()
                    if "dead_letter_not_stored" in x and key in x
                ),
                None,
            ),
            10,
            "the error line",
        )
        assert f"reason='{MALFORMED}'" in line and "OperationalError" in line
        assert "INSERT" not in line and '"x": 1' not in line, "no statement, no message content"
        wait_for(lambda: not broker_leftovers(app), 10, "the queue and unacked set to be empty")
    finally:
        app.runtime.db.create_all()
    serve_valid_task(app, worker, 8)  # had it come back, it would be dead-lettered now
    assert not [row for row in dead_letters(app) if row.task_id in (task_id, key)]


def test_failed_retry_refuses_a_message_set_aside_unread(harness: Harness) -> None:
    app, worker = harness.app, harness.live_worker()
    _task_id, _raw, key = push(harness, "unknown task")
    serve_valid_task(app, worker, 9)
    row = wait_for(
        lambda: next((r for r in dead_letters(app) if r.task_id == key), None), 10, "the row"
    )
    assert row.reason in REJECTED
    result = CliRunner().invoke(failed_group, ["retry", str(row.id)])
    assert result.exit_code == 1, result.output
    assert "set aside unread (unknown task): there is no task to retry" in result.output


def test_a_failed_task_keeps_a_marker_instead_of_oversized_arguments(harness: Harness) -> None:
    """Finding 9: a message bigger than callers may send (raw on the broker, but under the
    worker's limit for a raw item) fails as a task; its dead letter does not keep the
    arguments, and `failed retry` says why it cannot send them again."""
    app, worker = harness.app, harness.live_worker()
    task_id = str(uuid.uuid4())
    message = envelope(task_id=task_id)
    message["body"] = body_of(kwargs={"x": "a" * (MAX_MESSAGE_BYTES + 1000)})
    app.redis_client().lpush(QUEUE, json.dumps(message))
    serve_valid_task(app, worker, 10)
    row = wait_for(
        lambda: next((r for r in dead_letters(app) if r.task_id == task_id), None), 10, "the row"
    )
    assert row.reason == INVALID
    size = row.kwargs[TRUNCATED]["json_bytes"]
    assert row.kwargs == {TRUNCATED: {"json_bytes": size, "limit": MAX_MESSAGE_BYTES}}
    assert size > MAX_MESSAGE_BYTES
    result = CliRunner().invoke(failed_group, ["retry", str(row.id)])
    assert result.exit_code == 1 and "were too big to keep" in result.output, result.output


def test_an_oversized_message_is_kept_nowhere(harness: Harness) -> None:
    """Finding 9, the worker side: 50 MB pushed raw is dead-lettered unread. The dead
    letter is a few KB, no result of that size is stored, and the worker's memory does
    not stay higher."""
    app, worker = harness.app, harness.live_worker()
    serve_valid_task(app, worker, 11)
    before = rss_mb(worker)
    message = envelope()
    message["headers"]["kwargsrepr"] = "x" * 50_000_000
    raw = json.dumps(message).encode()
    app.redis_client().lpush(QUEUE, raw)
    serve_valid_task(app, worker, 12)
    row = wait_for(
        lambda: next(
            (r for r in dead_letters(app) if r.task_id == rejected_key(fingerprint(raw))), None
        ),
        30,
        "the dead letter",
    )
    assert row.reason == OVERSIZED and len(json.dumps(row.kwargs)) + len(row.error) < 8192
    client = app.redis_client()
    biggest = max(int(client.memory_usage(key) or 0) for key in client.scan_iter())
    assert biggest < 1_000_000, f"a key of {biggest} bytes on the broker"
    assert rss_mb(worker) - before < 30, f"{before:.0f} MB before, {rss_mb(worker):.0f} after"


def test_a_dead_letter_keeps_only_a_redacted_excerpt(harness: Harness) -> None:
    app, worker = harness.app, harness.live_worker()
    raw = b"not json: victim@example.com paid from 4012345678901234 " + b"y" * 20_000
    app.redis_client().lpush(QUEUE, raw)
    serve_valid_task(app, worker, 13)
    row = wait_for(
        lambda: next(
            (r for r in dead_letters(app) if r.task_id == rejected_key(fingerprint(raw))), None
        ),
        10,
        "the dead letter",
    )
    assert "v***@example.com" in row.error and "****1234" in row.error
    assert "victim" not in row.error and "4012345678901234" not in row.error
    assert row.error.count("y") < 4096 + 100, "at most the first 4096 bytes"
    assert "victim" not in worker.log() and "y" * 100 not in worker.log()


KOMBU_BRPOP_READ = "c42518699709f2df90f55a048fe6346612ae5527e5c4a6819f2c0920dc62088f"
"""sha256 of the source of kombu 5.7.0's `Channel._brpop_read`."""


def test_the_kombu_function_core_poison_copies_has_not_changed(harness: Harness) -> None:
    """`core.poison.screen_popped_items` replaces kombu's `Channel._brpop_read` by a copy
    with one step added. If kombu changes the original, compare the two, then update
    KOMBU_BRPOP_READ."""
    import inspect

    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._brpop_read._banktasks_original
    source = inspect.getsource(original)
    assert hashlib.sha256(source.encode()).hexdigest() == KOMBU_BRPOP_READ, source


def test_a_bad_message_cannot_take_the_place_of_a_tasks_dead_letter(harness: Harness) -> None:
    """A malformed message written with the id of a real task is set aside under a key of
    its own: the real task's failure, later, still gets its dead letter."""
    app, worker = harness.app, harness.live_worker()
    task_id, _raw, key = push(harness, "body a json object")
    wait_for(lambda: any(r.task_id == key for r in dead_letters(app)), 15, "the rejection")
    message = envelope(task_id=task_id)
    message["body"] = body_of(kwargs={"x": "not a number"})
    app.redis_client().lpush(QUEUE, json.dumps(message))
    serve_valid_task(app, worker, 11)
    row = wait_for(
        lambda: next((r for r in dead_letters(app) if r.task_id == task_id), None), 15, "the row"
    )
    assert (row.reason, row.task_name) == (INVALID, TASK)
    assert key != task_id and key.startswith("rejected:")
