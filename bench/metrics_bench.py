"""What the metrics cost: no-op drain throughput of a banktasks worker with the `metrics`
default plugin on (its signals, histograms and counters in every pool process) against
the same worker with `BANKTASKS_DISABLE=metrics`.

Both are real `celery -A bench.bt_app worker` processes (prefork, 2 processes) on their
own Redis database, started idle and switched on in turn for each repetition (order
reversed every other one), drained the way `bench.celery_bench.drain_rep` drains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from bench.celery_bench import Variant, banktasks_env, drain_rep, start_controlled, with_db
from bench.util import Results, Sample, fmt_ratio, fmt_sample, log, ratio

SECTION = "Metrics: drain throughput with the metrics plugin on ÷ off"
TARGET = 0.95


def run_metrics(results: Results, url: str, tmp: Path, reps: int, quick: bool) -> None:
    """Rows `metrics.drain.on`, `metrics.drain.off` and `metrics.drain.ratio` (≥ 0.95)."""
    from bench import bt_app, noop_plugin

    n = 600 if quick else 2000
    logdir = tmp / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    variants: list[Variant] = []
    try:
        for key, db, extra in (
            ("metrics_on", 5, {}),
            ("metrics_off", 6, {"BANKTASKS_DISABLE": "metrics"}),
        ):
            vurl = with_db(url, db)
            client = redis.Redis.from_url(vurl)
            client.flushdb()
            app = bt_app.make_app(
                redis_url=vurl,
                database_url=f"sqlite:///{tmp / f'{key}-producer.db'}",
                banktasks_var_dir=str(tmp / f"var-{key}-producer"),
                banktasks_config=str(tmp / "none.toml"),
                log_level="WARNING",
            )
            env = banktasks_env(tmp, vurl, key, BENCH_WORKER="1", LOG_LEVEL="WARNING", **extra)
            worker = start_controlled(app, "bench.bt_app", key, "bench", env, logdir)

            def send(i: int, app: Any = app) -> Any:
                app.set_current()
                return noop_plugin.noop.delay(i)

            variants.append(Variant(key, key, send, worker, client, before=app.set_current))
        log(f"metrics: workers ready; {reps} repetitions of {n} tasks each")
        for rep in range(reps):
            for v in variants if rep % 2 == 0 else variants[::-1]:
                drain_rep(v, n)
            log("metrics: rep " + ", ".join(f"{v.key} {v.drain[-1]:.0f}/s" for v in variants))
    finally:
        for v in variants:
            v.worker.proc.stop()

    on, off = variants
    s_on = results.sample("metrics.drain.on", Sample(on.drain, "tasks/s", True), tasks=n)
    s_off = results.sample("metrics.drain.off", Sample(off.drain, "tasks/s", True), tasks=n)
    r = ratio(s_on, s_off)
    met = r["ratio"] >= TARGET
    results.compare("metrics.drain.on/off", r, f"≥ {TARGET}", met)
    results.row(
        "metrics.drain.off",
        "no-op drain, banktasks, BANKTASKS_DISABLE=metrics",
        "value",
        fmt_sample(s_off),
        section=SECTION,
    )
    results.row(
        "metrics.drain.on",
        "no-op drain, banktasks, metrics on (the default)",
        "value",
        fmt_sample(s_on),
        section=SECTION,
    )
    results.row(
        "metrics.drain.ratio",
        "  metrics on ÷ off",
        "value",
        fmt_ratio(r),
        f"≥ {TARGET}",
        met,
        section=SECTION,
    )
