"""Worker start-up: ready time against bare Celery, and what the forked pool children cost.

Ready time is the time from spawning `celery worker` (prefork, 2 processes, -l INFO)
to its " ready." line. Variants: bare Celery (one task); bare Celery that first
imports SQLAlchemy's ORM, pydantic-settings and structlog (the libraries banktasks
is built on: the floor for any app on this stack); `celery -A core worker` (all
five plugins); the same without `gc.freeze` (how it was before, see core.startup).

The pool section starts each worker afresh and measures, per repetition: the round
trip of the first task (a freshly forked child: it pays its own connections) and the
steady round trip; then, after a task that runs a full garbage collection in each
child, every child's private memory (USS: pages no other process shares) and PSS
from /proc/<pid>/smaps_rollup. A fresh process that imports and builds the app
itself (a pool without preloaded state) would pay the import + set-up time shown.
"""

# ruff: noqa: RUF001

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from banktasks_testing import wait_for
from bench.celery_bench import HOST, banktasks_env, with_db, worker_cmd
from bench.util import ROOT, Proc, Results, Sample, bench_env, fmt_num, fmt_ratio, fmt_sample, log
from bench.util import ratio as ratio_of

SECTION = "Worker start-up: banktasks against bare Celery (Valkey, prefork -c 2, -l INFO)"
STACK_IMPORTS = "sqlalchemy.orm,pydantic_settings,structlog"
NO_FREEZE = {"BENCH_WORKER": "1", "BENCH_ALL_PLUGINS": "1", "BENCH_NO_FREEZE": "1"}


def _ready_variants(tmp: Path, url: str) -> list[tuple[str, str, dict[str, str]]]:
    bare = {"BENCH_BROKER_URL": url, "BENCH_BARE_CONF": "minimal"}
    return [
        ("bare", "bench.bare_app", bench_env(**bare)),
        ("bare_stack", "bench.bare_app", bench_env(**bare, BENCH_BARE_IMPORTS=STACK_IMPORTS)),
        ("banktasks", "core", banktasks_env(tmp, url, "ready-all", LOG_LEVEL="INFO")),
        (
            "banktasks_nofreeze",
            "bench.bt_app",
            banktasks_env(tmp, url, "ready-nofreeze", LOG_LEVEL="INFO", **NO_FREEZE),
        ),
    ]


def _start(module: str, node: str, env: dict[str, str], log_path: Path, queue: str | None) -> Proc:
    proc = Proc(worker_cmd(module, node, "INFO", queue=queue), env, log_path)
    try:
        wait_for(lambda: " ready." in proc.output() or not proc.alive(), 120, f"{node} ready", 0.01)
        if not proc.alive():
            raise RuntimeError(f"{node} exited:\n{proc.output()[-2000:]}")
    except BaseException:
        proc.stop()
        raise
    return proc


def run_ready(results: Results, url: str, tmp: Path, reps: int) -> None:
    """Ready time of each variant; the first round is a warm-up (bytecode, page cache)."""
    logdir = tmp / "logs"
    logdir.mkdir(exist_ok=True)
    variants = _ready_variants(tmp, with_db(url, 5))
    times: dict[str, list[float]] = {key: [] for key, _, _ in variants}
    for rep in range(reps + 1):
        order = variants if rep % 2 == 0 else variants[::-1]
        for key, module, env in order:
            node = f"ready-{key}-{rep}@{HOST}"
            proc = _start(module, node, env, logdir / f"ready-{key}-{rep}.log", None)
            elapsed = time.perf_counter() - proc.started
            proc.stop()
            if rep:
                times[key].append(elapsed)
        if rep:
            log(f"ready rep {rep}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    s = {key: results.sample(f"ready.{key}", Sample(v, "s")) for key, v in times.items()}
    r = ratio_of(s["banktasks"], s["bare"])
    met = r["ratio"] <= 1.5
    results.compare("ready.banktasks/bare", r, "≤ 1.5", met)
    floor = ratio_of(s["bare_stack"], s["bare"])
    over_floor = ratio_of(s["banktasks"], s["bare_stack"])
    results.compare("ready.bare_stack/bare", floor, "", None)
    results.compare("ready.banktasks/bare_stack", over_floor, "", None)

    def add(key: str, figure: str, text: str, target: str = "", ok: bool | None = None) -> None:
        results.row(key, figure, "value", text, target, ok, section=SECTION)

    add(
        "ready.bare", "worker ready time, bare `celery worker` with one task", fmt_sample(s["bare"])
    )
    add(
        "ready.banktasks",
        "worker ready time, `celery -A core worker`, all five plugins",
        fmt_sample(s["banktasks"]),
    )
    add("ready.ratio", "  banktasks ÷ bare Celery", fmt_ratio(r), "≤ 1.5×", met)
    add(
        "ready.floor",
        f"  (info) floor: bare Celery importing {STACK_IMPORTS.replace(',', ', ')} first; "
        "÷ bare; banktasks ÷ floor",
        f"{fmt_sample(s['bare_stack'])}; {fmt_ratio(floor)}; {fmt_ratio(over_floor)}",
    )
    nofreeze = ratio_of(s["banktasks_nofreeze"], s["bare"])
    add(
        "ready.nofreeze",
        "  (info) banktasks without gc.freeze (before this change); ÷ bare",
        f"{fmt_sample(s['banktasks_nofreeze'])}; {fmt_ratio(nofreeze)}",
    )


# --------------------------------------------------------------------------- pool children


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _smaps(pid: int) -> dict[str, int]:
    """kB figures of /proc/<pid>/smaps_rollup."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    return values


def _uss_pss(pid: int) -> tuple[float, float]:
    """(USS, PSS) of one process in MB (10⁶ bytes)."""
    m = _smaps(pid)
    return (m["Private_Clean"] + m["Private_Dirty"]) * 1024 / 1e6, m["Pss"] * 1024 / 1e6


class _Pool:
    """One variant of the pool measurement: how to start its worker and send its tasks."""

    def __init__(self, key: str, tmp: Path, url: str) -> None:
        from bench import bare_app, bt_app, noop_plugin

        self.key = key
        self.url = url
        if key == "bare":
            app = bare_app.make_app(url, "minimal", set_as_current=False)
            self.module, self.queue = "bench.bare_app", None
            self.env = bench_env(BENCH_BROKER_URL=url, BENCH_BARE_CONF="minimal")
            self.noop = app.tasks[bare_app.TASK_NAME]
            self.collect = app.tasks[bare_app.COLLECT_NAME]
            self.before: Any = lambda: None
        else:
            app = bt_app.make_app(
                redis_url=url,
                database_url=f"sqlite:///{tmp / 'pool-producer.db'}",
                banktasks_var_dir=str(tmp / "var-pool-producer"),
                banktasks_config=str(tmp / "none.toml"),
                log_level="WARNING",
            )
            extra = NO_FREEZE if key == "banktasks_nofreeze" else {}
            self.module, self.queue = "bench.bt_app", "bench"
            self.env = banktasks_env(
                tmp, url, f"pool-{key}", **{"BENCH_WORKER": "1", "BENCH_ALL_PLUGINS": "1", **extra}
            )
            self.noop, self.collect = noop_plugin.noop, noop_plugin.collect
            self.before = app.set_current
        self.first: list[float] = []
        self.steady: list[float] = []
        self.uss: list[float] = []
        self.pss: list[float] = []
        self.parent_uss: list[float] = []

    def rep(self, logdir: Path, rep: int) -> None:
        redis.Redis.from_url(self.url).flushdb()
        self.before()
        node = f"pool-{self.key}-{rep}@{HOST}"
        proc = _start(
            self.module, node, self.env, logdir / f"pool-{self.key}-{rep}.log", self.queue
        )
        try:
            t0 = time.perf_counter()
            self.noop.delay(0).get(timeout=60)
            self.first.append(time.perf_counter() - t0)
            trips = []
            for i in range(40):
                t0 = time.perf_counter()
                self.noop.delay(i).get(timeout=30)
                trips.append(time.perf_counter() - t0)
            self.steady.append(sorted(trips[10:])[len(trips[10:]) // 2])
            children = set(_children(proc.proc.pid))
            seen: set[int] = set()
            for _ in range(20):
                pending = [self.collect.delay() for _ in range(4)]
                seen |= {r.get(timeout=60) for r in pending}
                if seen >= children:
                    break
            if not seen >= children or len(children) != 2:
                raise RuntimeError(f"{self.key}: ran in {seen}, children {children}")
            figures = [_uss_pss(pid) for pid in sorted(children)]
            self.uss.append(sum(u for u, _ in figures) / len(figures))
            self.pss.append(sum(p for _, p in figures) / len(figures))
            self.parent_uss.append(_uss_pss(proc.proc.pid)[0])
        finally:
            proc.stop()


def _fresh_process_setup(tmp: Path, url: str, reps: int) -> Sample:
    """Seconds a fresh interpreter spends on `import core` + building the app (in-process)."""
    code = (
        "import time; t = time.perf_counter(); import core; core.app; "
        "print(time.perf_counter() - t)"
    )
    env = banktasks_env(tmp, url, "fresh", LOG_LEVEL="WARNING")
    values = []
    for _ in range(reps + 1):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=str(ROOT), capture_output=True, text=True
        )
        if out.returncode:
            raise RuntimeError(f"fresh process failed: {out.stderr[-1000:]}")
        values.append(float(out.stdout.strip().splitlines()[-1]))
    return Sample(values[1:], "s")


def run_pool(results: Results, url: str, tmp: Path, reps: int) -> None:
    """First-task and steady round trips, and the children's memory, per variant."""
    logdir = tmp / "logs"
    logdir.mkdir(exist_ok=True)
    purl = with_db(url, 6)
    pools = [_Pool(key, tmp, purl) for key in ("bare", "banktasks", "banktasks_nofreeze")]
    for rep in range(reps):
        for pool in pools if rep % 2 == 0 else pools[::-1]:
            pool.rep(logdir, rep)
        log(
            f"pool rep {rep + 1}: "
            + ", ".join(
                f"{p.key} first {p.first[-1] * 1e3:.1f} ms, steady {p.steady[-1] * 1e3:.2f} ms, "
                f"child USS {p.uss[-1]:.1f} MB"
                for p in pools
            )
        )
    fresh = results.sample("pool.fresh_setup", _fresh_process_setup(tmp, purl, reps))
    labels = {
        "bare": "bare Celery",
        "banktasks": "banktasks, all five plugins",
        "banktasks_nofreeze": "banktasks without gc.freeze",
    }
    by = {p.key: p for p in pools}
    for pool in pools:
        first = results.sample(f"pool.first.{pool.key}", Sample(pool.first, "s"))
        steady = results.sample(f"pool.steady.{pool.key}", Sample(pool.steady, "s"))
        results.row(
            f"pool.latency.{pool.key}",
            f"first task's round trip right after ready; steady p50: {labels[pool.key]}",
            "value",
            f"{fmt_sample(first)}; steady {fmt_sample(steady)}",
            section=SECTION,
        )
    for pool in pools:
        uss = results.sample(f"pool.uss.{pool.key}", Sample(pool.uss, "MB"))
        pss = results.sample(f"pool.pss.{pool.key}", Sample(pool.pss, "MB"))
        parent = results.sample(f"pool.parent_uss.{pool.key}", Sample(pool.parent_uss, "MB"))
        results.row(
            f"pool.memory.{pool.key}",
            "memory per pool child after a full collection in it: private (USS); PSS; "
            f"parent's USS: {labels[pool.key]}",
            "value",
            f"{fmt_sample(uss)}; PSS {fmt_sample(pss)}; parent {fmt_sample(parent)}",
            section=SECTION,
        )
    r = ratio_of(Sample(by["banktasks"].uss, "MB"), Sample(by["banktasks_nofreeze"].uss, "MB"))
    met = r["ratio"] < 1.0
    results.compare("pool.uss.freeze/nofreeze", r, "< 1", met)
    results.row(
        "pool.memory.ratio",
        "  child's private memory with gc.freeze ÷ without",
        "value",
        fmt_ratio(r),
        "< 1×",
        met,
        section=SECTION,
    )
    results.row(
        "pool.fresh",
        "  (info) what a child forked from the preloaded parent does not pay: "
        "import core + build the app in a fresh process",
        "value",
        f"{fmt_sample(fresh)} (÷ first-task round trip: "
        f"{fmt_num(fresh.median / Sample(by['banktasks'].first, 's').median)}×)",
        section=SECTION,
    )
