"""What the `delivery` default plugin costs: the ledger on `.delay()` and `delay_many`,
the reconciler's sweep over many tracked submissions, and transactional submission
(`delay_on_commit`) from commit to the worker.

- *Enqueue rate*: n `.delay()` calls from this process, nothing consuming, as in the
  Celery section's enqueue loop: banktasks with the ledger (the default app),
  banktasks with `BANKTASKS_DISABLE=delivery`, and bare Celery (`bench/bare_app.py`,
  minimal and banktasks' settings), each on its own Redis database; the queue (and
  the ledger) is emptied between repetitions, outside the timing. Then `delay_many`
  with the ledger and without. Variants interleaved, order reversed every other
  repetition. (The ledger patches kombu's Redis `Channel._put` for the whole process
  once an app turns it on; a connection without the option, bare Celery's here, then
  pays a check of ~0.3 µs per message.)
- *Sweep*: `delay_many` of N no-op tasks (20k; 100k with --full) with the ledger to a
  queue nobody consumes, then `reconciler.sweep(client, grace=0, ...)` with the
  arguments `api.sweep_once` passes (no outbox relay): every entry is checked and
  found queued. Valkey's own time in the sweep is the INFO commandstats `usec`
  difference (all commands, and EVAL: the Lua looks at 1,000 entries and scans of
  5,000 queue items, during each of which Valkey serves nobody else: their mean per
  call is how long one holds the broker). The broker memory is INFO `used_memory` (after lazy
  frees finished): before and after the publish, and before and after deleting the
  ledger's two keys at the end (the ledger's share). Lost messages: 1% of the queue
  is popped off its consuming end (what a worker that died between BRPOP and its
  unacked write leaves), then one sweep marks them suspect and one `CONFIRM_SECONDS`
  later (`now=` passed, no sleeping) sends them again: the time of that second
  sweep (its per-message `delivery.resent` warnings are silenced, not timed).
- *Commit → received*: a real banktasks worker (prefork -c 2) consumes a queue with
  a task that returns the worker's `time.time()` when it starts. In a loop: a session
  on the app's database, `delay_on_commit`, then `commit()`: the time from just
  before `commit()` to the task's start; against `.delay()` (from just before the
  call) to the same task's start, in the same repetitions. SQLite, as bt_app uses.

This module is also the worker's app (`celery -A bench.delivery_bench worker` with
BENCH_DELIVERY_WORKER=1) and the plugin of its task, `bench_delivery.stamp`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from banktasks_testing import wait_for
from bench.celery_bench import _forget, _pct, banktasks_env, start_controlled, with_db
from bench.util import (
    Results,
    Sample,
    fmt_num,
    fmt_ratio,
    fmt_sample,
    fmt_seconds,
    log,
    ratio,
)
from core import hookimpl, task

SECTION = "Delivery: the ledger, the reconciler, transactional submission (Valkey)"
QUEUE = "bench_delivery"
DBS = {"ledger": 7, "no_ledger": 8, "bare_min": 9, "bare": 10, "sweep": 11, "latency": 12}
"""Redis databases of this section, flushed before and after (the database sections,
which run later, use 7-14 too)."""

banktasks_name = "bench_delivery"


@task(queue=QUEUE)
def stamp(i: int) -> float:
    """Return the worker's clock when the task starts (the commit → received figure)."""
    return time.time()


@hookimpl
def register_tasks() -> list[Any]:
    return [stamp]


def make_app(**overrides: Any) -> Any:
    """create_app(load_settings(**overrides)) with this module's task."""
    from core import create_app, load_settings

    return create_app(load_settings(**overrides), plugins=[sys.modules[__name__]])


# --------------------------------------------------------------------------- section


def _isolated(url: str, tmp: Path, key: str) -> tuple[redis.Redis, dict[str, Any]]:
    """A flushed Redis database of this section, and the settings of an app on it with
    its own SQLite file and var dir (`key`: one of DBS)."""
    vurl = with_db(url, DBS[key])
    client = redis.Redis.from_url(vurl)
    client.flushdb()
    settings = {
        "redis_url": vurl,
        "database_url": f"sqlite:///{tmp / f'delivery-{key}.db'}",
        "banktasks_var_dir": str(tmp / f"var-delivery-{key}"),
        "banktasks_config": str(tmp / "none.toml"),
        "log_level": "WARNING",
    }
    return client, settings


def run_delivery(
    results: Results, url: str, tmp: Path, reps: int, celery_reps: int, quick: bool
) -> None:
    """Rows: enqueue with the ledger ÷ bare and ÷ no ledger, delay_many with ÷ without,
    the sweep at N tracked (and its memory), commit → received against .delay()."""
    try:
        _enqueue(results, url, tmp, celery_reps, quick)
        _sweep(results, url, tmp, reps, quick)
        _latency(results, url, tmp, celery_reps, quick)
    finally:
        for db in DBS.values():
            redis.Redis.from_url(with_db(url, db)).flushdb()


def _add(
    results: Results, key: str, figure: str, text: str, target: str = "", met: bool | None = None
) -> None:
    results.row(key, figure, "value", text, target, met, section=SECTION)


# --------------------------------------------------------------------------- enqueue


@dataclass
class _Producer:
    key: str
    app: Any
    client: redis.Redis
    queue: str
    send: Callable[[int], Any]
    ledger: bool
    before: Callable[[], None] = lambda: None
    rates: list[float] = field(default_factory=list)
    bulk: list[float] = field(default_factory=list)


def _clear(p: _Producer, expected: int, sent: list[Any] | None = None) -> None:
    """Check what was queued (and tracked), then empty the queue and the ledger."""
    from core.default_plugins.delivery.ledger import MESSAGES, SENT

    queued = p.client.llen(p.queue)
    tracked = p.client.zcard(SENT)
    if queued != expected or tracked != (expected if p.ledger else 0):
        raise RuntimeError(f"{p.key}: {queued} queued, {tracked} tracked; expected {expected}")
    p.client.delete(p.queue, MESSAGES, SENT)
    if sent:
        _forget(p.app, sent)


def _enqueue(results: Results, url: str, tmp: Path, reps: int, quick: bool) -> None:
    from bench import bare_app, bt_app, noop_plugin

    n = 1_000 if quick else 3_000
    bulk_n = 5_000 if quick else 20_000
    producers: list[_Producer] = []
    for key, disable in (("ledger", None), ("no_ledger", "delivery")):
        client, settings = _isolated(url, tmp, key)
        extra = {"banktasks_disable": disable} if disable else {}
        app = bt_app.make_app(**settings, **extra)
        on = bool(app.conf.broker_transport_options.get("banktasks_ledger"))
        if on != (disable is None):
            raise RuntimeError(f"{key}: the ledger is {'on' if on else 'off'}")

        def send(i: int) -> Any:
            return noop_plugin.noop.delay(i)

        producers.append(_Producer(key, app, client, "bench", send, on, app.set_current))
    for key, conf in (("bare_min", "minimal"), ("bare", "mirror")):
        vurl = with_db(url, DBS[key])
        client = redis.Redis.from_url(vurl)
        client.flushdb()
        app = bare_app.make_app(vurl, conf, set_as_current=False)
        producers.append(
            _Producer(key, app, client, "celery", app.tasks[bare_app.TASK_NAME].delay, False)
        )
    for p in producers:  # connect and declare outside the timings
        p.before()
        _clear(p, 1, [p.send(0)])

    log(f"delivery: enqueue, {reps} repetitions of {n} .delay() and {bulk_n} delay_many")
    bulk = [p for p in producers if p.key in ("ledger", "no_ledger")]
    for rep in range(reps):
        for p in producers if rep % 2 == 0 else producers[::-1]:
            p.before()
            started = time.perf_counter()
            sent = [p.send(i) for i in range(n)]
            p.rates.append(n / (time.perf_counter() - started))
            _clear(p, n, sent)
        for p in bulk if rep % 2 == 0 else bulk[::-1]:
            p.before()
            started = time.perf_counter()
            noop_plugin.noop.delay_many({"i": i} for i in range(bulk_n))
            p.bulk.append(bulk_n / (time.perf_counter() - started))
            _clear(p, bulk_n)
        log(
            f"delivery: rep {rep + 1}: .delay() "
            + ", ".join(f"{p.key} {p.rates[-1]:.0f}/s" for p in producers)
            + "; delay_many "
            + ", ".join(f"{p.key} {p.bulk[-1]:.0f}/s" for p in bulk)
        )

    by = {p.key: p for p in producers}
    s = {
        p.key: results.sample(
            f"delivery.enqueue.{p.key}", Sample(p.rates, "calls/s", True), calls=n
        )
        for p in producers
    }
    labels = {
        "bare_min": "enqueue .delay(), bare Celery, minimal settings",
        "bare": "enqueue .delay(), bare Celery, banktasks' settings",
        "no_ledger": "enqueue .delay(), banktasks, BANKTASKS_DISABLE=delivery (no ledger)",
        "ledger": "enqueue .delay(), banktasks with the ledger (the default)",
    }
    for key, label in labels.items():
        _add(results, f"delivery.enqueue.{key}", f"{label}, {n} calls", fmt_sample(s[key]))
    for ref, label in (
        ("bare_min", "bare Celery with minimal settings"),
        ("bare", "bare Celery with banktasks' settings"),
    ):
        r = ratio(s["ledger"], s[ref])
        met = r["ratio"] >= 0.8
        results.compare(f"delivery.enqueue.ledger/{ref}", r, "≥ 0.80", met)
        _add(
            results,
            f"delivery.enqueue.ratio.{ref}",
            f"  with the ledger ÷ {label}",
            fmt_ratio(r),
            "≥ 0.80",
            met,
        )
    r = ratio(s["ledger"], s["no_ledger"])
    results.compare("delivery.enqueue.ledger/no_ledger", r, "", None)
    _add(results, "delivery.enqueue.ratio.no_ledger", "  with the ledger ÷ without", fmt_ratio(r))
    r_nl = ratio(s["no_ledger"], s["bare_min"])
    results.compare("delivery.enqueue.no_ledger/bare_min", r_nl, "", None)
    _add(
        results,
        "delivery.enqueue.ratio.no_ledger_bare",
        "  (info) without the ledger ÷ bare Celery with minimal settings",
        fmt_ratio(r_nl),
    )
    b_on = results.sample(
        "delivery.delay_many.ledger", Sample(by["ledger"].bulk, "tasks/s", True), tasks=bulk_n
    )
    b_off = results.sample(
        "delivery.delay_many.no_ledger", Sample(by["no_ledger"].bulk, "tasks/s", True), tasks=bulk_n
    )
    _add(
        results,
        "delivery.delay_many.no_ledger",
        f"delay_many, {bulk_n} tasks, BANKTASKS_DISABLE=delivery (no ledger)",
        fmt_sample(b_off),
    )
    _add(
        results,
        "delivery.delay_many.ledger",
        f"delay_many, {bulk_n} tasks, with the ledger",
        fmt_sample(b_on),
    )
    r = ratio(b_on, b_off)
    results.compare("delivery.delay_many.ledger/no_ledger", r, "", None)
    _add(results, "delivery.delay_many.ratio", "  with the ledger ÷ without", fmt_ratio(r))


# --------------------------------------------------------------------------- sweep


def _used_memory(client: redis.Redis) -> int:
    """INFO used_memory once no lazy free is pending (Valkey frees big keys in a thread)."""
    info = wait_for(
        lambda: (m := client.info("memory")).get("lazyfree_pending_objects", 0) == 0 and m,
        60,
        "lazy frees done",
        0.02,
    )
    return int(info["used_memory"])


def _valkey_usec(client: redis.Redis) -> dict[str, float]:
    """Valkey's time in commands so far (INFO commandstats, µs): EVAL, its calls, and all."""
    stats = client.info("commandstats")
    return {
        "eval": float(stats.get("cmdstat_eval", {}).get("usec", 0)),
        "eval_calls": float(stats.get("cmdstat_eval", {}).get("calls", 0)),
        "all": float(sum(v.get("usec", 0) for v in stats.values())),
    }


def _sweep(results: Results, url: str, tmp: Path, reps: int, quick: bool) -> None:
    from bench import bt_app, noop_plugin
    from core.default_plugins.delivery import ledger
    from core.default_plugins.delivery.reconciler import CONFIRM_SECONDS, sweep

    n = 20_000 if quick else 100_000
    lost = n // 100
    client, settings = _isolated(url, tmp, "sweep")
    app = bt_app.make_app(**settings)
    app.set_current()
    noop = noop_plugin.noop
    _clear(_Producer("sweep", app, client, "bench", noop.delay, True), 1, [noop.delay(0)])

    used_before = _used_memory(client)
    started = time.perf_counter()
    noop.delay_many({"i": i} for i in range(n))
    publish = time.perf_counter() - started
    if client.llen("bench") != n or ledger.tracked(client) != n:
        raise RuntimeError(
            f"sweep: {client.llen('bench')} queued, {ledger.tracked(client)} tracked"
        )
    used_after = _used_memory(client)
    log(f"delivery: {n} tasks sent with delay_many in {publish:.1f}s")

    options = app.conf.broker_transport_options
    kwargs: dict[str, Any] = {
        "grace": 0,
        "max_resends": 5,
        "result_key": lambda task_id: app.backend.get_key_for_task(task_id),
        "unacked_key": options.get("unacked_key", "unacked"),
    }
    clock = time.time() + 1
    seconds: list[float] = []
    scan: list[float] = []
    per_call: list[float] = []
    busy: list[float] = []
    for _ in range(reps):
        clock += 10
        before = _valkey_usec(client)
        started = time.perf_counter()
        report = sweep(client, now=clock, **kwargs)
        seconds.append(time.perf_counter() - started)
        after = _valkey_usec(client)
        scan.append((after["eval"] - before["eval"]) / 1e6)
        calls = after["eval_calls"] - before["eval_calls"]
        per_call.append(scan[-1] / max(calls, 1))
        busy.append((after["all"] - before["all"]) / 1e6)
        if report.checked != n or report.queued != n or report.suspect or report.resent:
            raise RuntimeError(f"sweep of {n} queued: unexpected report {report.as_dict()}")
    log(f"delivery: sweep of {n} queued: " + ", ".join(f"{s:.2f}s" for s in seconds))

    marking: list[float] = []
    resending: list[float] = []
    quiet = logging.getLogger("banktasks.delivery")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one `delivery.resent` warning per message: not timed
    for _ in range(reps):
        popped = client.rpop("bench", lost)  # the oldest messages, as a worker's BRPOP takes
        if not popped or len(popped) != lost:
            raise RuntimeError(f"could not take {lost} messages off the queue")
        clock += 10
        started = time.perf_counter()
        first = sweep(client, now=clock, **kwargs)
        marking.append(time.perf_counter() - started)
        clock += CONFIRM_SECONDS + 1
        started = time.perf_counter()
        second = sweep(client, now=clock, **kwargs)
        resending.append(time.perf_counter() - started)
        if first.suspect != lost or len(second.resent) != lost or client.llen("bench") != n:
            raise RuntimeError(
                f"lost {lost}: first sweep {first.suspect} suspect, second resent "
                f"{len(second.resent)}, {client.llen('bench')} queued after"
            )
    quiet.setLevel(level)
    log(
        f"delivery: {lost} lost of {n}: marking sweeps "
        + ", ".join(f"{s:.2f}s" for s in marking)
        + "; re-sending sweeps "
        + ", ".join(f"{s:.2f}s" for s in resending)
    )

    with_ledger = _used_memory(client)
    client.delete(ledger.MESSAGES, ledger.SENT)
    without = _used_memory(client)
    ledger_bytes = (with_ledger - without) / n
    total_bytes = (used_after - used_before) / n
    queue_bytes = total_bytes - ledger_bytes
    client.flushdb()

    s_sweep = results.sample("delivery.sweep", Sample(seconds, "s"), tracked=n)
    s_mark = results.sample("delivery.sweep.mark_lost", Sample(marking, "s"), tracked=n, lost=lost)
    s_resend = results.sample(
        "delivery.sweep.resend_lost", Sample(resending, "s"), tracked=n, lost=lost
    )
    s_scan = results.sample("delivery.sweep.valkey_lua", Sample(scan, "s"), tracked=n)
    s_call = results.sample("delivery.sweep.valkey_lua_call", Sample(per_call, "s"), tracked=n)
    s_busy = results.sample("delivery.sweep.valkey_busy", Sample(busy, "s"), tracked=n)
    results.sample("delivery.ledger_bytes", Sample([ledger_bytes], "B"), tracked=n)
    results.sample("delivery.queued_bytes", Sample([total_bytes], "B"), tracked=n)
    _add(
        results,
        "delivery.sweep",
        f"reconciler sweep, {n:,} tracked submissions, all queued (grace 0): the sweep; "
        "Valkey's own time in it (INFO commandstats), of which its Lua calls (the looks at "
        "1,000 entries, the scans of 5,000 queue items), and one such call on average",
        f"{fmt_sample(s_sweep)} ({fmt_num(n / s_sweep.median)} entries/s); Valkey "
        f"{fmt_seconds(s_busy.median)}, Lua {fmt_seconds(s_scan.median)}, "
        f"{fmt_seconds(s_call.median)} per call",
    )
    _add(
        results,
        "delivery.sweep.lost",
        f"  {lost:,} of them lost (taken off the queue): the sweep that re-sends them; "
        "the one before that marks them",
        f"{fmt_sample(s_resend)}; marking {fmt_sample(s_mark)}",
    )
    _add(
        results,
        "delivery.memory",
        f"broker memory the ledger adds per tracked submission (INFO used_memory, {n:,} "
        "no-op tasks queued); the queued message itself",
        f"{fmt_num(ledger_bytes)} B; message {fmt_num(queue_bytes)} B "
        f"(delay_many of the {n:,}: {fmt_seconds(publish)})",
    )


# --------------------------------------------------------------------------- latency


def _latency(results: Results, url: str, tmp: Path, reps: int, quick: bool) -> None:
    from core.outbox import pending_count

    k = 200 if quick else 500
    _, settings = _isolated(url, tmp, "latency")
    vurl = settings["redis_url"]
    app = make_app(**settings)
    app.runtime.db.create_all()
    logdir = tmp / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    env = banktasks_env(tmp, vurl, "delivery", BENCH_DELIVERY_WORKER="1", LOG_LEVEL="WARNING")
    worker = start_controlled(app, "bench.delivery_bench", "delivery", QUEUE, env, logdir)
    db = app.runtime.db
    bound = app.tasks[f"{banktasks_name}.stamp"]  # the TaskDef has no delay_on_commit

    def plain(i: int) -> tuple[float, float, str]:
        started = time.time()
        result = bound.delay(i)
        return started, time.time(), result.id

    def on_commit(i: int) -> tuple[float, float, str]:
        with db.session() as session:
            task_id = bound.delay_on_commit(session, i)
            started = time.time()
            session.commit()
            return started, time.time(), task_id

    runs: dict[str, dict[str, list[float]]] = {
        key: {"p50": [], "p95": [], "call": []} for key in ("delay", "on_commit")
    }
    variants: list[tuple[str, Callable[[int], tuple[float, float, str]]]] = [
        ("delay", plain),
        ("on_commit", on_commit),
    ]

    done: list[Any] = []

    def one(send: Callable[[int], tuple[float, float, str]], i: int) -> tuple[float, float]:
        started, returned, task_id = send(i)
        result = app.AsyncResult(task_id)
        began = float(result.get(timeout=30))
        done.append(result)
        return began - started, returned - started

    try:
        worker.consume(True)
        app.set_current()
        for _name, send in variants:  # warm-up, not recorded
            for i in range(20):
                one(send, i)
        log(f"delivery: commit → received, {reps} repetitions of {k} each")
        for rep in range(reps):
            for key, send in variants if rep % 2 == 0 else variants[::-1]:
                lat, call = zip(*(one(send, i) for i in range(k)), strict=True)
                runs[key]["p50"].append(_pct(list(lat), 0.50))
                runs[key]["p95"].append(_pct(list(lat), 0.95))
                runs[key]["call"].append(_pct(list(call), 0.50))
                _forget(app, done)
                done.clear()
            log(
                f"delivery: rep {rep + 1}: p50 "
                + ", ".join(f"{key} {r['p50'][-1] * 1e3:.2f} ms" for key, r in runs.items())
            )
        left, _ = pending_count(db.engine)
        if left:
            raise RuntimeError(f"{left} outbox rows left after the commits")
    finally:
        worker.proc.stop()

    labels = {
        "delay": (".delay() → received, from just before .delay()", ".delay() returns after"),
        "on_commit": (
            "delay_on_commit + commit() → received, from just before commit()",
            "commit() returns after",
        ),
    }
    p50: dict[str, Sample] = {}
    p95: dict[str, Sample] = {}
    for key, (label, call_label) in labels.items():
        p50[key] = results.sample(f"delivery.latency.{key}.p50", Sample(runs[key]["p50"], "s"))
        p95[key] = results.sample(f"delivery.latency.{key}.p95", Sample(runs[key]["p95"], "s"))
        call = results.sample(f"delivery.latency.{key}.call", Sample(runs[key]["call"], "s"))
        _add(
            results,
            f"delivery.latency.{key}",
            f"{label} (a task returning time.time() at its start; {k} one at a time, "
            "prefork -c 2): p50; p95; the call",
            f"{fmt_sample(p50[key])}; p95 {fmt_seconds(p95[key].median)}; "
            f"{call_label} {fmt_seconds(call.median)}",
        )
    r = ratio(p50["on_commit"], p50["delay"])
    r95 = ratio(p95["on_commit"], p95["delay"])
    results.compare("delivery.latency.p50.on_commit/delay", r, "", None)
    results.compare("delivery.latency.p95.on_commit/delay", r95, "", None)
    _add(
        results,
        "delivery.latency.ratio",
        "  delay_on_commit ÷ .delay(): p50; p95",
        f"{fmt_ratio(r)}; p95 {fmt_ratio(r95)}",
    )


app = make_app() if os.environ.get("BENCH_DELIVERY_WORKER") else None
