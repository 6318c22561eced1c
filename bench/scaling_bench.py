"""The scaling model's figures (docs/scaling.md): what one task costs the broker and the
database, measured on real processes.

- *Broker commands per task*: `CONFIG RESETSTAT`, N no-op tasks (`bench.noop`), then
  `INFO commandstats`, in three phases: the producer sends (the worker does not consume
  the queue yet), a real worker (`celery worker -P prefork -c 2`) runs them, the
  producer fetches the results. Variants: `.delay()` + `.get()`, `.delay()` with the
  result stored but not fetched, `delay_many`, and `.delay()` with `ignore_result=True`.
  The bench's own polling and the remote-control commands that switch the worker's
  queue on and off (measured with no task) are subtracted.
- *Valkey CPU per task*: CPU time of the valkey-server process over the same phases
  (`/proc/<pid>/task/*/schedstat`, nanoseconds; `/proc/<pid>/stat` counts 10 ms ticks,
  too coarse for a second of work), so one core is saturated at 1e6 / µs tasks/s; and
  the share of one core Valkey used during the drain. `redis-benchmark` (LPUSH/RPOP,
  50 clients) on the same server, with the same CPU reading, says what one command
  costs when Valkey is pushed hard.
- *PostgreSQL per plugin task*: each plugin's main task, K at a time, through one
  `celery -A core worker -P prefork -c 1` (all five plugins loaded, as `banktasks worker
  -Q <plugin>` runs them) on the PostgreSQL data set: wall time per task (from the
  results' `date_done`), the worker's CPU (main and pool process) and the PostgreSQL
  server's CPU (postmaster and every backend) per task. One worker process running such
  tasks back to back keeps PostgreSQL busy with (PG CPU ÷ wall) cores, so one PostgreSQL
  core serves wall ÷ PG CPU such processes.
"""

# ruff: noqa: RUF001

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from banktasks_testing import SMTPRecorder, wait_for
from bench.celery_bench import (
    HOST,
    ControlledWorker,
    _forget,
    _redis_benchmark,
    _results_done,
    banktasks_env,
    start_controlled,
    with_db,
    worker_cmd,
)
from bench.data import NOW, Dataset
from bench.util import Proc, Results, Sample, fmt_num, fmt_sample, fmt_seconds, log

SECTION = (
    "Scaling: broker commands and Valkey CPU per task (value column); "
    "PostgreSQL load per plugin task (PostgreSQL column)"
)
QUEUE = "bench"
BROKER_DB = 6  # flushed before and after (the bulk and broker sections use it too, earlier)
PG_DB = 5
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- CPU time


def process_cpu(pid: int) -> float:
    """CPU seconds of process `pid`: its live threads' run time from schedstat (ns), plus
    its reaped children (cutime + cstime, in ticks); 0 if it is gone."""
    total = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[13]) + int(fields[14])) / TICK
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
    return total


def children(pid: int) -> list[int]:
    """The direct children of `pid` (of any of its threads)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and all its descendants (see `process_cpu`)."""
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += process_cpu(pid)
        todo.extend(children(pid))
    return total


def postmaster_pid() -> int | None:
    """The bench PostgreSQL server's postmaster, from its postmaster.pid."""
    from bench.pg import _cluster_dir

    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((_cluster_dir() / "data" / "postmaster.pid").read_text().split()[0])
    return None


# --------------------------------------------------------------------------- commandstats


def command_counts(client: redis.Redis) -> Counter[str]:
    """Calls per command since the last CONFIG RESETSTAT (`INFO commandstats`)."""
    stats = client.info("commandstats")
    return Counter(
        {
            name.removeprefix("cmdstat_").upper(): int(values["calls"])
            for name, values in stats.items()
            if isinstance(values, dict)
            and values.get("calls")
            and name != "cmdstat_config|resetstat"  # the RESETSTAT that started the count
        }
    )


@dataclass
class Phase:
    """What Valkey did during one phase: commands by name, its CPU seconds, wall seconds."""

    commands: Counter[str]
    cpu: float
    wall: float


def measure(client: redis.Redis, valkey: int, action: Callable[[], Any]) -> tuple[Phase, Any]:
    """RESETSTAT, run `action`, then read Valkey's CPU and command counts."""
    client.config_resetstat()
    cpu0, t0 = process_cpu(valkey), time.perf_counter()
    value = action()
    wall, cpu1 = time.perf_counter() - t0, process_cpu(valkey)
    return Phase(command_counts(client), cpu1 - cpu0, wall), value


@dataclass
class Variant:
    """One way of sending no-op tasks, and what each repetition measured."""

    key: str
    label: str
    send: Callable[[int, str], list[Any]]  # (n, queue) → ids, or AsyncResults to fetch
    fetch: bool = False
    stores_result: bool = True
    ops: list[dict[str, float]] = field(default_factory=list)  # per rep: command → per task
    phase_ops: dict[str, list[float]] = field(default_factory=dict)  # phase → per task
    phase_commands: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # phase → µs per task
    drain_busy: list[float] = field(default_factory=list)  # Valkey CPU ÷ drain wall
    drain_rate: list[float] = field(default_factory=list)


def _wait_drained(client: redis.Redis, queue: str, n_polls: list[int]) -> None:
    """Until the queue is empty and nothing is unacked (acks_late: after the result)."""

    def done() -> bool:
        n_polls[0] += 1
        pipe = client.pipeline(transaction=False)
        pipe.llen(queue)
        pipe.hlen("unacked")
        queued, unacked = pipe.execute()
        return queued == 0 and unacked == 0

    wait_for(done, 300, "scaling: queue drained", 0.05)


def broker_rep(
    v: Variant,
    app: Any,
    client: redis.Redis,
    valkey: int,
    worker: ControlledWorker,
    control: Counter[str],
    n: int,
    queue: str,
) -> None:
    """One repetition of one variant: send, run (worker on), fetch; commands and CPU.

    `queue` is new for each repetition: a worker whose consumer was just cancelled may
    still have a BRPOP on its last queue in flight (up to 1 s) and would take a message.
    """
    phases: dict[str, Phase] = {}
    phases["send"], sent = measure(client, valkey, lambda: v.send(n, queue))
    ids = [x if isinstance(x, str) else x.id for x in sent]
    if client.llen(queue) != n:
        raise RuntimeError(f"{v.key}: expected {n} queued, found {client.llen(queue)}")
    polls = [0]
    worker.queue = queue

    def run() -> None:
        worker.consume(True)
        try:
            _wait_drained(client, queue, polls)
        finally:
            worker.consume(False)

    phases["worker"], _ = measure(client, valkey, run)
    phases["worker"].commands.subtract({"LLEN": polls[0], "HLEN": polls[0]})
    phases["worker"].commands.subtract(control)
    metas = None
    if v.stores_result:
        metas = _results_done(client, ids)
        if metas is None:
            raise RuntimeError(f"{v.key}: results missing after the drain")
    if v.fetch:
        phases["fetch"], _ = measure(
            client, valkey, lambda: [r.get(timeout=30, interval=0.01) for r in sent]
        )
    per_task: Counter[str] = Counter()
    for name, phase in phases.items():
        kept = {k: c for k, c in phase.commands.items() if c > 0}
        per_task.update(kept)
        v.phase_ops.setdefault(name, []).append(sum(kept.values()) / n)
        v.phase_commands.setdefault(name, []).append({k: c / n for k, c in kept.items()})
        v.cpu.setdefault(name, []).append(phase.cpu / n * 1e6)
    v.ops.append({k: c / n for k, c in per_task.items()})
    if metas is not None:
        done = sorted(datetime.fromisoformat(m["date_done"]).timestamp() for m in metas)
        span = (done[-1] - done[0]) * n / (n - 1)
        v.drain_busy.append(phases["worker"].cpu / span)
        v.drain_rate.append(n / span)
    _forget(app, [app.AsyncResult(i) for i in ids])  # unsubscribe, delete (not measured)


def run_broker(results: Results, url: str, tmp: Path, reps: int, quick: bool) -> None:
    """Broker commands and Valkey CPU per no-op task, four ways of sending; Valkey's
    share of a core during the drain; redis-benchmark's cost per command."""
    from bench import bt_app, noop_plugin

    n = 400 if quick else 3000
    burl = with_db(url, BROKER_DB)
    client = redis.Redis.from_url(burl)
    client.flushdb()
    valkey = int(client.info("server")["process_id"])
    app = bt_app.make_app(
        redis_url=burl,
        database_url=f"sqlite:///{tmp / 'scaling-producer.db'}",
        banktasks_var_dir=str(tmp / "var-scaling"),
        banktasks_config=str(tmp / "none.toml"),
        log_level="WARNING",
    )
    app.set_current()
    noop = noop_plugin.noop
    logdir = tmp / "logs"
    logdir.mkdir(exist_ok=True)
    env = banktasks_env(tmp, burl, "scaling", BENCH_WORKER="1", LOG_LEVEL="WARNING")
    worker = start_controlled(app, "bench.bt_app", "scaling", QUEUE, env, logdir)

    # `.delay(i)` is `.apply_async(kwargs={"i": i})`; the queue option only names this
    # repetition's queue (the same commands as the routed default)
    def delay(count: int, queue: str) -> list[str]:
        # the AsyncResult is dropped at once, as a fire-and-forget caller does (Celery
        # subscribes to the result's channel at send, and unsubscribes when it is dropped)
        return [noop.apply_async(kwargs={"i": i}, queue=queue).id for i in range(count)]

    def delay_kept(count: int, queue: str) -> list[Any]:
        return [noop.apply_async(kwargs={"i": i}, queue=queue) for i in range(count)]

    def ignored(count: int, queue: str) -> list[str]:
        return [
            noop.apply_async(kwargs={"i": i}, queue=queue, ignore_result=True).id
            for i in range(count)
        ]

    def many(count: int, queue: str) -> list[str]:
        return noop.delay_many(({"i": i} for i in range(count)), queue=queue)

    variants = [
        Variant("delay_get", ".delay() + .get()", delay_kept, fetch=True),
        Variant("delay", ".delay(), result stored, not fetched", delay),
        Variant("delay_many", "delay_many, result stored, not fetched", many),
        Variant("ignore", ".delay() with ignore_result=True", ignored, stores_result=False),
    ]
    try:
        for warm in (noop.delay(0), noop.delay(1)):  # connect, declare, warm the pool
            worker.consume(True)
            warm.get(timeout=30)
            worker.consume(False)
        controls: list[Counter[str]] = []
        for rep in range(reps):
            worker.queue = f"{QUEUE}-control-{rep}"  # a new queue, as each variant's
            empty, _ = measure(
                client, valkey, lambda: (worker.consume(True), worker.consume(False))
            )
            controls.append(empty.commands)
            order = variants if rep % 2 == 0 else variants[::-1]
            for v in order:
                queue = f"{QUEUE}-{v.key}-{rep}"
                broker_rep(v, app, client, valkey, worker, empty.commands, n, queue)
            log(
                f"scaling broker rep {rep + 1}: "
                + ", ".join(
                    f"{v.key} {sum(v.ops[-1].values()):.1f} cmd "
                    f"{sum(c[-1] for c in v.cpu.values()):.0f} µs"
                    for v in variants
                )
            )
        ceiling = _ceiling_cpu(url, client, valkey, reps, quick)
    finally:
        worker.proc.stop()
        client.flushdb()
    _broker_rows(results, variants, n, ceiling, controls)


def _ceiling_cpu(
    url: str, client: redis.Redis, valkey: int, reps: int, quick: bool
) -> dict[str, list[float]] | None:
    """redis-benchmark LPUSH+RPOP, 50 clients: ops/s, Valkey µs per op, Valkey busy share."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    n = 20000 if quick else 100000
    out: dict[str, list[float]] = {"ops": [], "us": [], "busy": []}
    for _ in range(reps):
        cpu0 = process_cpu(valkey)
        found = _redis_benchmark(binary, url, 50, n)
        cpu = process_cpu(valkey) - cpu0
        out["ops"].append(found["LPUSH"])
        out["us"].append(cpu / (2 * n) * 1e6)
        out["busy"].append(cpu / (n / found["LPUSH"] + n / found["RPOP"]))
    client.flushdb()
    redis.Redis.from_url(with_db(url, 6)).flushdb()
    return out


def _breakdown(ops: list[dict[str, float]]) -> str:
    names = sorted({k for rep in ops for k in rep})
    med = {k: statistics.median(rep.get(k, 0.0) for rep in ops) for k in names}
    shown = sorted(((c, k) for k, c in med.items() if c >= 0.05), key=lambda x: (-x[0], x[1]))
    return ", ".join(f"{k} {c:.2f}" for c, k in shown)


def _broker_rows(
    results: Results,
    variants: list[Variant],
    n: int,
    ceiling: dict[str, list[float]] | None,
    controls: list[Counter[str]],
) -> None:
    def add(key: str, figure: str, text: str) -> None:
        results.row(key, figure, "value", text, section=SECTION)

    control = statistics.median(sum(c.values()) for c in controls)
    for v in variants:
        total = results.sample(
            f"scaling.ops.{v.key}",
            Sample([sum(rep.values()) for rep in v.ops], "commands/task"),
            tasks=n,
            by_command=v.ops,
            by_phase=v.phase_ops,
            by_phase_and_command=v.phase_commands,
        )
        phases = ", ".join(
            f"{name} {statistics.median(vals):.1f}" for name, vals in v.phase_ops.items()
        )
        add(
            f"scaling.ops.{v.key}",
            f"(info) Valkey commands per task, {v.label} ({n} no-op tasks, prefork -c 2)",
            f"{fmt_sample(total)} ({phases}): {_breakdown(v.ops)}",
        )
    best: dict[str, float] = {}
    for v in variants:
        per_rep = [sum(c[i] for c in v.cpu.values()) for i in range(len(v.ops))]
        s = results.sample(
            f"scaling.valkey_cpu.{v.key}",
            Sample(per_rep, "µs/task"),
            by_phase=v.cpu,
            tasks=n,
        )
        best[v.key] = s.median
        phases = ", ".join(
            f"{name} {fmt_num(statistics.median(vals), 2)}" for name, vals in v.cpu.items()
        )
        sat = [1e6 / x for x in per_rep]
        results.sample(f"scaling.valkey_saturation.{v.key}", Sample(sat, "tasks/s", True))
        add(
            f"scaling.cpu.{v.key}",
            f"(info) Valkey CPU per task, {v.label}; tasks/s that saturate one Valkey core",
            f"{fmt_sample(s)} ({phases}); {fmt_num(1e6 / s.median)} "
            f"[{fmt_num(min(sat))}–{fmt_num(max(sat))}] tasks/s",
        )
    drain = next(v for v in variants if v.key == "delay")
    busy = results.sample("scaling.drain_busy", Sample(drain.drain_busy, "share", True))
    rate = results.sample("scaling.drain_rate", Sample(drain.drain_rate, "tasks/s", True))
    add(
        "scaling.drain",
        "(info) Valkey's CPU during the drain by 2 worker processes: share of one core; drain rate",
        f"{busy.median:.1%} [{busy.min:.1%}–{busy.max:.1%}] of a core at "
        f"{fmt_num(rate.median)} tasks/s (Valkey's own CPU per task in the worker phase: "
        f"{fmt_num(statistics.median(drain.cpu['worker']), 2)} µs)",
    )
    if ceiling is None:
        add(
            "scaling.ceiling",
            "(info) redis-benchmark on the same Valkey: Valkey CPU per command",
            "redis-benchmark not installed (apt-get install -y redis-tools)",
        )
    else:
        ops = results.sample("scaling.ceiling.lpush", Sample(ceiling["ops"], "ops/s", True))
        us = results.sample("scaling.ceiling.us_per_op", Sample(ceiling["us"], "µs/op"))
        cbusy = statistics.median(ceiling["busy"])
        per_task = statistics.median(
            sum(rep.values()) for rep in next(v for v in variants if v.key == "delay").ops
        )
        add(
            "scaling.ceiling",
            "(info) redis-benchmark LPUSH/RPOP, 50 clients, on the same Valkey: ops/s; "
            "Valkey CPU per command; Valkey's share of a core",
            f"{fmt_sample(ops)}; {fmt_sample(us)}; {cbusy:.0%} — a stored-result task's "
            f"{per_task:.1f} commands at that cost: {fmt_num(per_task * us.median, 2)} µs "
            f"(measured: {fmt_num(best['delay'], 2)} µs)",
        )
    results.note(
        f"scaling: the remote-control commands that switch the worker's queue on and off "
        f"({control:.0f} per switch-on/off, measured with no task) and the bench's own "
        "LLEN/HLEN polling are subtracted from the worker phase"
    )


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PluginLoad:
    """One plugin's main task, its arguments, and the per-task figures of each repetition."""

    plugin: str
    task: str
    what: str
    items: Callable[[int], list[dict[str, Any]]]
    wall: list[float] = field(default_factory=list)  # s per task
    worker_cpu: list[float] = field(default_factory=list)
    pg_cpu: list[float] = field(default_factory=list)
    detail: str = ""


def _plugin_loads(users: list[int]) -> list[PluginLoad]:
    """The five plugins' main tasks and their arguments (`users`: active users' ids)."""

    def fraud(count: int) -> list[dict[str, Any]]:
        return [
            {"since": NOW - timedelta(days=i + 1), "until": NOW - timedelta(days=i)}
            for i in range(count)
        ]

    def reports(count: int) -> list[dict[str, Any]]:
        return [{"report_date": (NOW - timedelta(days=i + 1)).date()} for i in range(count)]

    def export(count: int) -> list[dict[str, Any]]:
        first = (NOW - timedelta(days=30)).date()
        last = (NOW - timedelta(days=1)).date()
        return [
            {"user_id": users[i], "start_date": first, "end_date": last, "export_format": "csv"}
            for i in range(count)
        ]

    def health(count: int) -> list[dict[str, Any]]:
        return [{} for _ in range(count)]

    def email(count: int) -> list[dict[str, Any]]:
        return [
            {"user_id": users[i], "subject": "Change of terms", "message": "Dear customer, ..."}
            for i in range(count)
        ]

    return [
        PluginLoad("fraud", "fraud.analyze_fraud_patterns", "one day's window each", fraud),
        PluginLoad("reports", "reports.generate_daily_reports", "one day each", reports),
        PluginLoad(
            "export", "export.export_transaction_data", "csv, one user's 30 days each", export
        ),
        PluginLoad("health", "health.system_health_check", "every registered check", health),
        PluginLoad(
            "notifications",
            "notifications.send_email_notification",
            "SMTP to a local recorder",
            email,
        ),
    ]


def run_pg(results: Results, ds: Dataset, url: str, tmp: Path, reps: int, quick: bool) -> None:
    """Each plugin's main task, `k` back to back through one worker process.

    The worker consumes the fraud, reports, export and health queues all the time (no
    wait for a queue switch); the notifications queue only while e-mails are measured,
    so that the e-mails the other plugins' hooks queue are not run in their windows
    (they are deleted before the e-mails are measured).
    """
    from bench.db_bench import _clear_alerts, _exec, _make_app

    k = 10 if quick else 30
    purl = with_db(url, PG_DB)
    client = redis.Redis.from_url(purl)
    client.flushdb()
    pg = postmaster_pid()
    if pg is None:
        raise RuntimeError("the bench PostgreSQL server's postmaster.pid was not found")
    smtp = SMTPRecorder().start()
    app = _make_app(ds.url, purl, tmp / "var-scaling-pg", None)  # all five plugins
    logdir = tmp / "logs"
    logdir.mkdir(exist_ok=True)
    env = banktasks_env(
        tmp,
        purl,
        "scaling-pg",
        DATABASE_URL=ds.url,
        LOG_LEVEL="WARNING",
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
    )
    users = [
        r[0] for r in _exec(app, "SELECT id FROM users WHERE is_active ORDER BY id LIMIT :k", k=k)
    ]
    loads = _plugin_loads(users)
    always = ",".join(load.plugin for load in loads if load.plugin != "notifications")
    node = f"scalingpg@{HOST}"
    proc = Proc(worker_cmd("core", node, "WARNING", 1, queue=always), env, logdir / "pg.log")
    worker = ControlledWorker(app, node, "notifications", proc)
    try:
        worker.wait_ready()
        for load in loads:  # warm-up: the pool process imports, connects, caches
            _pg_rep(load, app, client, worker, pg, 2, record=False)
        for rep in range(reps):
            order = loads if rep % 2 == 0 else loads[::-1]
            for load in order:
                if load.plugin == "fraud":
                    _clear_alerts(app)
                _pg_rep(load, app, client, worker, pg, k, record=True)
            log(
                f"scaling pg rep {rep + 1}: "
                + ", ".join(
                    f"{x.plugin} {x.wall[-1] * 1e3:.1f} ms (pg {x.pg_cpu[-1] * 1e3:.1f})"
                    for x in loads
                )
            )
    finally:
        proc.stop()
        smtp.stop()
        _clear_alerts(app)
        app.runtime.db.dispose()
        client.flushdb()
    for load in loads:
        _pg_row(results, load, k)


def _pg_rep(
    load: PluginLoad,
    app: Any,
    client: redis.Redis,
    worker: ControlledWorker,
    pg: int,
    k: int,
    record: bool,
) -> None:
    """k tasks of one plugin sent at once, run by the worker's one pool process."""
    switch = load.plugin == worker.queue
    if switch:
        client.delete(worker.queue)  # e-mails the other plugins' hooks queued meanwhile
    app.set_current()
    wpid = worker.proc.proc.pid
    w0, p0 = tree_cpu(wpid), tree_cpu(pg)
    ids = app.tasks[load.task].delay_many(load.items(k))
    if switch:
        worker.consume(True)
    try:
        metas = wait_for(lambda: _results_done(client, ids), 600, f"{load.task} results", 0.02)
    finally:
        if switch:
            worker.consume(False)
    w1, p1 = tree_cpu(wpid), tree_cpu(pg)
    done = sorted(datetime.fromisoformat(m["date_done"]).timestamp() for m in metas)
    if not record:
        return
    load.wall.append((done[-1] - done[0]) / (k - 1))
    load.worker_cpu.append((w1 - w0) / k)
    load.pg_cpu.append((p1 - p0) / k)
    load.detail = _detail(load, [m.get("result") for m in metas])


def _detail(load: PluginLoad, outs: list[Any]) -> str:
    outs = [o for o in outs if isinstance(o, dict)]
    if not outs:
        return ""
    if load.plugin == "fraud":
        return f"{statistics.median(o.get('scanned', 0) for o in outs):,.0f} rows each"
    if load.plugin == "reports":
        rows = statistics.median(o.get("totals", {}).get("transactions", 0) for o in outs)
        return f"{rows:,.0f} transactions each, every format"
    if load.plugin == "export":
        return f"{statistics.median(o.get('rows', 0) for o in outs):,.0f} rows each"
    if load.plugin == "health":
        return f"{len(outs[0].get('checks', {}))} checks"
    return ""


def _pg_row(results: Results, load: PluginLoad, k: int) -> None:
    wall = results.sample(f"scaling.pg.{load.plugin}.wall", Sample(load.wall, "s"), tasks=k)
    wcpu = results.sample(f"scaling.pg.{load.plugin}.worker_cpu", Sample(load.worker_cpu, "s"))
    pcpu = results.sample(f"scaling.pg.{load.plugin}.pg_cpu", Sample(load.pg_cpu, "s"))
    cores = [p / w for p, w in zip(load.pg_cpu, load.wall, strict=True) if w]
    serves = [w / p for p, w in zip(load.pg_cpu, load.wall, strict=True) if p]
    s_cores = results.sample(f"scaling.pg.{load.plugin}.pg_cores_per_process", Sample(cores, ""))
    s_serves = results.sample(
        f"scaling.pg.{load.plugin}.processes_per_pg_core", Sample(serves, "", True)
    )
    busy = wcpu.median / wall.median if wall.median else 0.0
    what = f"{load.what}; {load.detail}" if load.detail else load.what
    results.row(
        f"scaling.pg.{load.plugin}",
        f"(info) {load.task} ({what}), {k} back to back on one worker process: wall; "
        "worker CPU; PostgreSQL CPU per task → PG cores one process keeps busy; "
        "processes one PG core serves",
        "postgresql",
        f"{fmt_sample(wall)}; worker {fmt_seconds(wcpu.median)} ({busy:.0%} of the wall); "
        f"PG {fmt_seconds(pcpu.median)} → {fmt_num(s_cores.median, 2)} "
        f"[{fmt_num(s_cores.min, 2)}–{fmt_num(s_cores.max, 2)}] cores; "
        f"**{fmt_num(s_serves.median, 2)}** [{fmt_num(s_serves.min, 2)}–"
        f"{fmt_num(s_serves.max, 2)}] processes",
        section=SECTION,
    )


# --------------------------------------------------------------------------- driver


def run_scaling(
    results: Results,
    pg: Dataset | None,
    pg_missing: str,
    url: str,
    tmp: Path,
    reps: int,
    quick: bool,
) -> None:
    """The broker figures, then (with PostgreSQL) the per-plugin database figures."""
    started = time.perf_counter()
    run_broker(results, url, tmp, reps, quick)
    log(f"scaling broker part: {time.perf_counter() - started:.1f}s")
    if pg is None:
        results.row(
            "scaling.pg.missing",
            "(info) PostgreSQL load per plugin task",
            "postgresql",
            f"not measured: {pg_missing}",
            section=SECTION,
        )
        return
    started = time.perf_counter()
    run_pg(results, pg, url, tmp, reps, quick)
    log(f"scaling PostgreSQL part: {time.perf_counter() - started:.1f}s")
