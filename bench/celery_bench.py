"""Framework overhead against bare Celery: drain throughput, enqueue rate, round-trip
latency, worker ready time, and the broker's own ceiling (redis-benchmark).

All workers are real `celery worker` processes (prefork, 2 processes, same log
level, --without-mingle/gossip/heartbeat) on one Valkey server started for the
run. Each variant has its own Redis database and its own worker, started once
and idle (consuming a dummy queue); a repetition turns its real queue on with
`add_consumer` and off again with `cancel_consumer`, so the variants take turns
(interleaved, order reversed every other repetition) in the same minutes of the
same noisy machine.
"""

# ruff: noqa: RUF001

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from banktasks_testing import wait_for
from bench.util import (
    Proc,
    Results,
    Sample,
    bench_env,
    fmt_num,
    fmt_ratio,
    fmt_sample,
    fmt_seconds,
    log,
    ratio,
)

HOST = socket.gethostname()
WORKER_FLAGS = ["--without-mingle", "--without-gossip", "--without-heartbeat"]
SECTION = "Celery: banktasks against bare Celery (Valkey, prefork -c 2, same log level)"


def with_db(url: str, db: int) -> str:
    """The same Redis URL on another database number."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


def worker_cmd(
    app_module: str, node: str, level: str, concurrency: int = 2, queue: str | None = None
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app_module,
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-l",
        level,
        "-n",
        node,
        *WORKER_FLAGS,
    ]
    if queue:
        cmd += ["-Q", queue]
    return cmd


def banktasks_env(tmp: Path, redis_url: str, name: str, **extra: str) -> dict[str, str]:
    """Environment of a banktasks process: its own var dir and SQLite file, no config file."""
    var = tmp / f"var-{name}"
    var.mkdir(parents=True, exist_ok=True)
    return bench_env(
        REDIS_URL=redis_url,
        DATABASE_URL=extra.pop("DATABASE_URL", f"sqlite:///{var / 'banking.db'}"),
        BANKTASKS_VAR_DIR=str(var),
        BANKTASKS_CONFIG=str(var / "none.toml"),
        **extra,
    )


@dataclass
class ControlledWorker:
    """A worker started idle; its real queue is switched on and off by remote control."""

    app: Any  # the producer-side Celery app in this process (same broker/db)
    node: str
    queue: str
    proc: Proc

    def wait_ready(self, timeout: float = 90.0) -> None:
        def answered() -> bool:
            if not self.proc.alive():
                raise RuntimeError(f"worker {self.node} exited:\n{self.proc.output()[-2000:]}")
            return bool(self.app.control.ping(destination=[self.node], timeout=0.5))

        wait_for(answered, timeout, f"worker {self.node}", interval=0.2)

    def consume(self, on: bool) -> None:
        control = self.app.control
        call = control.add_consumer if on else control.cancel_consumer
        replies = call(self.queue, destination=[self.node], reply=True, timeout=10)
        if not replies:
            raise RuntimeError(
                f"worker {self.node} did not answer {'add' if on else 'cancel'}_consumer"
            )


def start_controlled(
    app: Any,
    module: str,
    node_name: str,
    queue: str,
    env: dict[str, str],
    logdir: Path,
    level: str = "WARNING",
    concurrency: int = 2,
) -> ControlledWorker:
    node = f"{node_name}@{HOST}"
    proc = Proc(
        worker_cmd(module, node, level, concurrency, queue=f"idle-{node_name}"),
        env,
        logdir / f"worker-{node_name}.log",
    )
    worker = ControlledWorker(app, node, queue, proc)
    worker.wait_ready()
    return worker


@dataclass
class Variant:
    key: str
    label: str
    send: Callable[[int], Any]
    worker: ControlledWorker
    client: redis.Redis
    before: Callable[[], None] = lambda: None
    with_latency: bool = True
    drain: list[float] = field(default_factory=list)
    enqueue: list[float] = field(default_factory=list)
    seq_p50: list[float] = field(default_factory=list)
    seq_p99: list[float] = field(default_factory=list)
    par_p50: list[float] = field(default_factory=list)
    par_p99: list[float] = field(default_factory=list)


def _forget(app: Any, async_results: list[Any]) -> None:
    """Stop listening for results we will not read, and delete them (outside timings)."""
    backend = app.backend
    for result in async_results:
        with contextlib.suppress(Exception):
            backend.remove_pending_result(result)
    keys = [f"celery-task-meta-{r.id}" for r in async_results]
    client = redis.Redis.from_url(app.conf.broker_url)
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


def _results_done(client: redis.Redis, ids: list[str]) -> list[dict[str, Any]] | None:
    metas: list[dict[str, Any]] = []
    for start in range(0, len(ids), 1000):
        chunk = client.mget([f"celery-task-meta-{i}" for i in ids[start : start + 1000]])
        for raw in chunk:
            if raw is None:
                return None
            meta = json.loads(raw)
            if meta.get("status") != "SUCCESS":
                if meta.get("status") in ("FAILURE", "REVOKED"):
                    raise RuntimeError(f"a benchmark task failed: {meta}")
                return None
            metas.append(meta)
    return metas


def drain_rep(v: Variant, n: int) -> None:
    """Enqueue n tasks (timed: enqueue rate), then let the worker drain them (throughput)."""
    v.before()
    client = v.client
    started = time.perf_counter()
    sent = [v.send(i) for i in range(n)]
    v.enqueue.append(n / (time.perf_counter() - started))
    queued = client.llen(v.worker.queue)
    if queued != n:
        raise RuntimeError(f"{v.key}: expected {n} queued messages, found {queued}")
    ids = [r.id for r in sent]
    v.worker.consume(True)
    try:
        wait_for(lambda: client.llen(v.worker.queue) == 0, 600, f"{v.key} queue drained", 0.05)
        metas = wait_for(lambda: _results_done(client, ids), 120, f"{v.key} results", 0.05)
    finally:
        v.worker.consume(False)
    done = sorted(datetime.fromisoformat(m["date_done"]).timestamp() for m in metas)
    span = done[-1] - done[0]
    v.drain.append((n - 1) / span if span > 0 else float("inf"))
    _forget(v.worker.app, sent)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def latency_rep(v: Variant, sequential: int, in_flight_total: int, window: int = 50) -> None:
    """Round trips: `delay()` + `get()` one at a time, then with `window` in flight."""
    v.before()
    v.worker.consume(True)
    try:
        for i in range(20):  # warm-up, not recorded
            v.send(i).get(timeout=30)
        seq = []
        for i in range(sequential):
            t0 = time.perf_counter()
            v.send(i).get(timeout=30)
            seq.append(time.perf_counter() - t0)
        par: list[float] = []
        pending: deque[tuple[float, Any]] = deque()
        sent = 0
        while len(par) < in_flight_total:
            while len(pending) < window and sent < in_flight_total:
                pending.append((time.perf_counter(), v.send(sent)))
                sent += 1
            t0, result = pending.popleft()
            result.get(timeout=60)
            par.append(time.perf_counter() - t0)
    finally:
        v.worker.consume(False)
    v.seq_p50.append(_pct(seq, 0.50))
    v.seq_p99.append(_pct(seq, 0.99))
    v.par_p50.append(_pct(par, 0.50))
    v.par_p99.append(_pct(par, 0.99))


def _conf_mismatches(bt_app: Any) -> list[str]:
    from bench.bare_app import MIRROR

    wrong = []
    for key, value in MIRROR.items():
        actual = bt_app.conf.get(key)
        if key == "broker_transport_options":
            actual = {"visibility_timeout": actual.get("visibility_timeout")}
        if actual != value:
            wrong.append(f"{key}: bare={value!r} banktasks={actual!r}")
    return wrong


def run_overhead(results: Results, url: str, tmp: Path, reps: int, quick: bool) -> None:
    """Drain throughput, enqueue rate and latency: bare (mirror conf), banktasks, bare (minimal)."""
    from bench import bare_app, bt_app, noop_plugin

    n = 600 if quick else 2000
    sequential = 100 if quick else 300
    in_flight = 200 if quick else 600
    logdir = tmp / "logs"
    logdir.mkdir(exist_ok=True)

    bt_url = with_db(url, 2)
    bt = bt_app.make_app(
        redis_url=bt_url,
        database_url=f"sqlite:///{tmp / 'bt-producer.db'}",
        banktasks_var_dir=str(tmp / "var-producer"),
        banktasks_config=str(tmp / "none.toml"),
        log_level="WARNING",
    )
    mismatches = _conf_mismatches(bt)
    if mismatches:
        results.note(
            "bare Celery's mirrored settings differ from banktasks': " + "; ".join(mismatches)
        )

    variants: list[Variant] = []
    workers: list[ControlledWorker] = []
    try:
        specs = [  # key, conf (None: banktasks), redis db, worker log level, latency measured
            ("bare", "mirror", 1, "WARNING", True),
            ("banktasks", None, 2, "WARNING", True),
            ("bare_min", "minimal", 3, "WARNING", True),
            ("bare_min_info", "minimal", 4, "INFO", False),
            ("banktasks_info", None, 15, "INFO", False),
        ]
        if quick:  # the -l INFO pair is an (info) row of the full run only
            specs = specs[:3]
        for key, conf, db, level, with_latency in specs:
            vurl = with_db(url, db)
            client = redis.Redis.from_url(vurl)
            client.flushdb()
            if conf is None:
                app = (
                    bt
                    if key == "banktasks"
                    else bt_app.make_app(
                        redis_url=vurl,
                        database_url=f"sqlite:///{tmp / 'bt-producer.db'}",
                        banktasks_var_dir=str(tmp / "var-producer"),
                        banktasks_config=str(tmp / "none.toml"),
                        log_level="WARNING",
                    )
                )
                env = banktasks_env(tmp, vurl, key, BENCH_WORKER="1", LOG_LEVEL=level)
                worker = start_controlled(
                    app, "bench.bt_app", key, "bench", env, logdir, level=level
                )
                workers.append(worker)

                def send(i: int) -> Any:
                    return noop_plugin.noop.delay(i)

                variant = Variant(key, key, send, worker, client, before=app.set_current)
            else:
                app = bare_app.make_app(vurl, conf, set_as_current=False)
                task = app.tasks[bare_app.TASK_NAME]
                env = bench_env(BENCH_BROKER_URL=vurl, BENCH_BARE_CONF=conf)
                worker = start_controlled(
                    app, "bench.bare_app", key, "celery", env, logdir, level=level
                )
                workers.append(worker)
                variant = Variant(key, key, task.delay, worker, client)
            variant.with_latency = with_latency
            variants.append(variant)
        log(f"workers ready; {reps} repetitions of {n} tasks each")
        for rep in range(reps):
            order = variants if rep % 2 == 0 else variants[::-1]
            for v in order:
                drain_rep(v, n)
            for v in order:
                if v.with_latency:
                    latency_rep(v, sequential, in_flight)
            log(
                f"rep {rep + 1}: drain "
                + ", ".join(f"{v.key} {v.drain[-1]:.0f}/s" for v in variants)
                + "; enqueue "
                + ", ".join(f"{v.key} {v.enqueue[-1]:.0f}/s" for v in variants)
            )
    finally:
        for worker in workers:
            worker.proc.stop()

    by = {v.key: v for v in variants}
    _overhead_rows(results, by["bare_min"], by["bare"], by["banktasks"], n, sequential, in_flight)
    if "banktasks_info" not in by:
        return
    info_min = results.sample(
        "drain.bare_min_info", Sample(by["bare_min_info"].drain, "tasks/s", True), tasks=n
    )
    info_bt = results.sample(
        "drain.banktasks_info", Sample(by["banktasks_info"].drain, "tasks/s", True), tasks=n
    )
    r_info = ratio(info_bt, info_min)
    results.compare("drain_info.banktasks/bare_min", r_info, "", None)
    results.row(
        "drain.info",
        "  (info) the same drain with -l INFO (banktasks' default LOG_LEVEL): "
        "bare minimal; banktasks; ratio",
        "value",
        f"{fmt_num(info_min.median)}; {fmt_num(info_bt.median)} tasks/s; {fmt_ratio(r_info)}",
        section=SECTION,
    )


def _overhead_rows(
    results: Results,
    bmin: Variant,
    bare: Variant,
    bank: Variant,
    n: int,
    sequential: int,
    in_flight: int,
) -> None:
    """Rows: both bare references, banktasks, and banktasks ÷ each reference."""

    def add(key: str, figure: str, text: str, target: str = "", met: bool | None = None) -> None:
        results.row(key, figure, "value", text, target, met, section=SECTION)

    refs = (("bare_min", bmin, "minimal settings"), ("bare", bare, "banktasks' settings"))

    def compare(
        metric: str, mine: Sample, samples: dict[str, Sample], target: str, ok: Any
    ) -> None:
        for key, _v, label in refs:
            r = ratio(mine, samples[key])
            met = ok(r["ratio"])
            results.compare(f"{metric}.banktasks/{key}", r, target, met)
            add(
                f"{metric}.ratio.{key}",
                f"  banktasks ÷ bare Celery with {label}",
                fmt_ratio(r),
                target,
                met,
            )

    # drain throughput
    drains = {}
    for key, v, label in refs:
        drains[key] = results.sample(f"drain.{key}", Sample(v.drain, "tasks/s", True), tasks=n)
        add(f"drain.{key}", f"no-op drain, bare Celery, {label}", fmt_sample(drains[key]))
    mine = results.sample("drain.banktasks", Sample(bank.drain, "tasks/s", True), tasks=n)
    add("drain.banktasks", "no-op drain, banktasks", fmt_sample(mine))
    compare("drain", mine, drains, "≥ 0.90", lambda x: x >= 0.90)

    # enqueue rate
    rates = {}
    for key, v, label in refs:
        rates[key] = results.sample(f"enqueue.{key}", Sample(v.enqueue, "calls/s", True), calls=n)
        add(f"enqueue.{key}", f"enqueue .delay(), bare Celery, {label}", fmt_sample(rates[key]))
    mine = results.sample("enqueue.banktasks", Sample(bank.enqueue, "calls/s", True), calls=n)
    add(
        "enqueue.banktasks",
        "enqueue .delay() with argument validation, banktasks",
        fmt_sample(mine),
    )
    compare("enqueue", mine, rates, "≥ 0.85", lambda x: x >= 0.85)

    # round-trip latency
    for kind, label, count in (
        ("seq", "sequential", sequential),
        ("par", "50 in flight", in_flight),
    ):
        p50 = {}
        for key, v, ref_label in (*refs, ("banktasks", bank, "")):
            p50[key] = results.sample(
                f"latency.{kind}.{key}.p50", Sample(getattr(v, f"{kind}_p50"), "s"), tasks=count
            )
            p99 = results.sample(
                f"latency.{kind}.{key}.p99", Sample(getattr(v, f"{kind}_p99"), "s"), tasks=count
            )
            who = f"bare Celery, {ref_label}" if ref_label else "banktasks"
            add(
                f"latency.{kind}.{key}",
                f"round trip delay()+get(), {label}, {who}: p50; p99",
                f"{fmt_sample(p50[key])}; p99 {fmt_seconds(p99.median)}",
            )
        compare(f"latency.{kind}.p50", p50["banktasks"], p50, "p50 ≤ 1.2×", lambda x: x <= 1.2)


def _redis_benchmark(binary: str, url: str, clients: int, n: int) -> dict[str, float]:
    parsed = redis.connection.parse_url(url)
    cmd = [binary, "-h", parsed.get("host", "127.0.0.1"), "-p", str(parsed.get("port", 6379))]
    if parsed.get("password"):
        cmd += ["-a", parsed["password"]]
    cmd += ["--dbnum", "6", "-t", "lpush,rpop", "-n", str(n), "-c", str(clients), "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {(out.stderr or out.stdout)[-500:]}")
    found = {}
    for line in csv.reader(io.StringIO(out.stdout)):
        if len(line) >= 2 and line[0].upper().split()[0] in ("LPUSH", "RPOP"):
            found[line[0].upper().split()[0]] = float(line[1])
    if set(found) != {"LPUSH", "RPOP"}:
        raise RuntimeError(f"could not read redis-benchmark's output: {out.stdout[-500:]}")
    return found


def run_broker_ceiling(results: Results, url: str, reps: int, quick: bool) -> None:
    """redis-benchmark LPUSH/RPOP on the same server, unpipelined: 50 clients (default) and 1."""
    binary = shutil.which("redis-benchmark")
    figure = "broker ceiling: redis-benchmark LPUSH / RPOP, unpipelined, 50 clients"
    if binary is None:
        text = "redis-benchmark not installed (apt-get install -y redis-tools)"
        results.row("broker.ceiling", figure, "value", text, section=SECTION)
        results.note(
            "redis-benchmark is not installed, so the broker ceiling was not measured: "
            "apt-get install -y redis-tools"
        )
        return
    n = 20000 if quick else 100000
    runs: dict[int, dict[str, list[float]]] = {
        50: {"LPUSH": [], "RPOP": []},
        1: {"LPUSH": [], "RPOP": []},
    }
    for _ in range(reps):
        for clients in (50, 1):
            found = _redis_benchmark(binary, url, clients, n if clients == 50 else n // 5)
            for op, value in found.items():
                runs[clients][op].append(value)
    redis.Redis.from_url(with_db(url, 6)).flushdb()
    s = {
        (c, op): results.sample(f"broker.{op.lower()}.c{c}", Sample(v, "ops/s", True))
        for c, ops in runs.items()
        for op, v in ops.items()
    }
    lpush = s[(50, "LPUSH")]
    text = f"{fmt_sample(lpush)} / {fmt_num(s[(50, 'RPOP')].median)} ops/s"
    results.row("broker.ceiling", figure, "value", text, section=SECTION)
    shares = []
    for key, label in (
        ("bare_min", "bare, minimal"),
        ("bare", "bare, banktasks' settings"),
        ("banktasks", "banktasks"),
    ):
        drain = results.samples.get(f"drain.{key}")
        if drain:
            share = drain["median"] / lpush.median
            results.compare(f"broker.drain_share.{key}", {"ratio": share}, "", None)
            shares.append(f"{label} {share:.1%}")
    if shares:
        results.row(
            "broker.share",
            "  no-op drain as a fraction of LPUSH ops/s (each task costs several broker commands)",
            "value",
            "; ".join(shares),
            section=SECTION,
        )
    one = s[(1, "LPUSH")]
    text = f"{fmt_sample(one)} / {fmt_num(s[(1, 'RPOP')].median)} ops/s"
    enq = results.samples.get("enqueue.banktasks")
    if enq:
        text += f"; banktasks' enqueue rate = {enq['median'] / one.median:.1%} of it"
    results.row(
        "broker.c1",
        "  (info) the same with 1 client (one producer's round-trip limit)",
        "value",
        text,
        section=SECTION,
    )
