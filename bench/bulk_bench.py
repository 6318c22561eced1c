"""Bulk submission: `delay_many` against a `.delay()` loop on the same task, its peak
memory for many items, and the drain rate of what it sent.

The task is `bench.noop(i: int)` (bench/noop_plugin.py), in its own Redis database.
- *Rate*: n items sent with a `.delay()` loop, then with one `delay_many` call (order
  reversed every other repetition; the queue is emptied between, outside the timing).
- *Peak memory*: `tracemalloc` peak during one `delay_many` of 500k items (50k with
  --quick), in this process; the returned ids (≈ 90 bytes each) are part of it.
- *Drain*: what `delay_many` sent, drained by a real worker (prefork -c 2), measured
  as in the Celery section: (N−1) ÷ (last − first `date_done`).
"""

# ruff: noqa: RUF002

from __future__ import annotations

import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from banktasks_testing import wait_for
from bench.celery_bench import (
    _forget,
    _results_done,
    banktasks_env,
    start_controlled,
    with_db,
)
from bench.util import Results, Sample, fmt_num, fmt_ratio, fmt_sample, log, ratio

SECTION = "Bulk submission: delay_many (Valkey, prefork -c 2)"
QUEUE = "bench"


def run_bulk(results: Results, url: str, tmp: Path, reps: int, quick: bool) -> None:
    """Rows: `.delay()` loop and `delay_many` rates and their ratio, peak memory, drain."""
    from bench import bt_app, noop_plugin

    n = 5_000 if quick else 20_000
    many = 50_000 if quick else 500_000
    drain_n = 1_000 if quick else 10_000
    burl = with_db(url, 6)
    client = redis.Redis.from_url(burl)
    client.flushdb()
    app = bt_app.make_app(
        redis_url=burl,
        database_url=f"sqlite:///{tmp / 'bulk-producer.db'}",
        banktasks_var_dir=str(tmp / "var-bulk"),
        banktasks_config=str(tmp / "none.toml"),
        log_level="WARNING",
    )
    app.set_current()
    noop = noop_plugin.noop
    noop.delay(0)  # connect and declare outside the timings
    client.delete(QUEUE)

    def loop() -> float:
        started = time.perf_counter()
        for i in range(n):
            noop.delay(i)
        return n / (time.perf_counter() - started)

    def bulk() -> float:
        started = time.perf_counter()
        noop.delay_many({"i": i} for i in range(n))
        return n / (time.perf_counter() - started)

    rates: dict[str, list[float]] = {"loop": [], "bulk": []}
    for rep in range(reps):
        order = [("loop", loop), ("bulk", bulk)]
        for key, run in order if rep % 2 == 0 else order[::-1]:
            rates[key].append(run())
            if client.llen(QUEUE) != n:
                raise RuntimeError(f"{key}: expected {n} queued, found {client.llen(QUEUE)}")
            client.delete(QUEUE)
        log(
            f"bulk rep {rep + 1}: .delay() {rates['loop'][-1]:.0f}/s, "
            f"delay_many {rates['bulk'][-1]:.0f}/s"
        )

    tracemalloc.start()
    try:
        started = time.perf_counter()
        ids = noop.delay_many({"i": i} for i in range(many))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if len(ids) != many or client.llen(QUEUE) != many:
        raise RuntimeError(f"memory run: {len(ids)} ids, {client.llen(QUEUE)} queued")
    ids_bytes = sum(len(i) + 49 + 8 for i in ids)  # str objects + list slots
    del ids
    client.delete(QUEUE)
    log(f"bulk memory: {many} items, tracemalloc peak {peak / 1e6:.1f} MB in {elapsed:.1f}s")

    drains = _drain(app, client, tmp, drain_n, reps)

    def add(key: str, figure: str, text: str, target: str = "", met: bool | None = None) -> None:
        results.row(key, figure, "value", text, target, met, section=SECTION)

    s_loop = results.sample("bulk.loop", Sample(rates["loop"], "calls/s", True), calls=n)
    s_bulk = results.sample("bulk.delay_many", Sample(rates["bulk"], "tasks/s", True), tasks=n)
    add("bulk.loop", f".delay() loop, {n} tasks", fmt_sample(s_loop))
    add("bulk.delay_many", f"delay_many, {n} tasks", fmt_sample(s_bulk))
    r = ratio(s_bulk, s_loop)
    met = r["ratio"] >= 10
    results.compare("bulk.delay_many/loop", r, "≥ 10", met)
    add("bulk.ratio", "  delay_many ÷ .delay() loop", fmt_ratio(r), "≥ 10", met)
    results.sample("bulk.peak_memory", Sample([peak / 1e6], "MB"), items=many)
    add(
        "bulk.memory",
        f"delay_many of {many} items: tracemalloc peak (of which the returned ids)",
        f"{fmt_num(peak / 1e6)} MB ({fmt_num(ids_bytes / 1e6)} MB); "
        f"{fmt_num(many / elapsed)} tasks/s under tracemalloc",
    )
    s_drain = results.sample("bulk.drain", Sample(drains, "tasks/s", True), tasks=drain_n)
    add("bulk.drain", f"drain of what delay_many sent, {drain_n} tasks", fmt_sample(s_drain))


def _drain(app: Any, client: redis.Redis, tmp: Path, n: int, reps: int) -> list[float]:
    """Drain rate of `n` tasks sent by `delay_many`, by a real worker, `reps` times."""
    from bench import noop_plugin

    logdir = tmp / "logs"
    logdir.mkdir(exist_ok=True)
    env = banktasks_env(tmp, app.conf.broker_url, "bulk", BENCH_WORKER="1", LOG_LEVEL="WARNING")
    worker = start_controlled(app, "bench.bt_app", "bulk", QUEUE, env, logdir)
    drains: list[float] = []
    try:
        for _ in range(reps):
            ids = noop_plugin.noop.delay_many({"i": i} for i in range(n))
            worker.consume(True)
            try:
                wait_for(lambda: client.llen(QUEUE) == 0, 600, "bulk queue drained", 0.05)
                sent = ids
                metas = wait_for(
                    lambda sent=sent: _results_done(client, sent), 120, "bulk results", 0.05
                )
            finally:
                worker.consume(False)
            done = sorted(datetime.fromisoformat(m["date_done"]).timestamp() for m in metas)
            span = done[-1] - done[0]
            drains.append((n - 1) / span if span > 0 else float("inf"))
            _forget(app, [app.AsyncResult(i) for i in ids])
    finally:
        worker.proc.stop()
    return drains
