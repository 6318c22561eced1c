"""Fraud analysis, the daily report and the CSV export on a million transactions,
on SQLite and PostgreSQL side by side, each against hand-written baselines.

Plugin tasks are called in-process (`plugins.fraud.analyze_fraud_patterns(...)`,
validated like a worker would), except the export, which runs in a fresh process
per repetition so that its peak RSS is its own. The chunked fraud analysis
(`analyze_fraud_patterns_chunked`) goes through real workers (`celery -A core worker`,
one, two and four processes).
"""

# ruff: noqa: RUF001

from __future__ import annotations

import contextlib
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.celery_bench import banktasks_env, start_controlled, with_db
from bench.data import DAYS, NOW, Dataset, pg_dataset, sqlite_dataset
from bench.util import (
    Results,
    Sample,
    fmt_num,
    fmt_ratio,
    fmt_sample,
    fmt_seconds,
    log,
    ratio,
    run_timed,
)

SECTION = "Database: fraud, reports, export (SQLite file | PostgreSQL)"
REPORT_DAY = (NOW - timedelta(days=17)).date()  # a full day in the middle of the data
SCALE_DAYS = (3, 9, 30)  # windows of ~100k, ~300k and 1M rows of the million
LOOP_SUBSET = 20_000
CHUNKS = 4
MB = 1_000_000


def _k(rows: int) -> str:
    """100,000 → "100k", 1,000,000 → "1M" (about)."""
    if rows >= 950_000:
        return f"{rows / 1e6:.3g}M"
    return f"{rows / 1000:.0f}k"


def _label(backend: str) -> str:
    return "SQLite" if backend == "sqlite" else "PostgreSQL"


def _col(backend: str) -> str:
    return "value" if backend == "sqlite" else "postgresql"


def _micros(moment: datetime) -> int:
    from core.db import to_micros

    return to_micros(moment)


def _make_app(url: str, redis_url: str, var: Path, plugins: list[Any] | None) -> Any:
    from core import create_app, load_settings

    var.mkdir(parents=True, exist_ok=True)
    app = create_app(
        load_settings(
            database_url=url,
            redis_url=redis_url,
            banktasks_var_dir=str(var),
            banktasks_config=str(var / "none.toml"),
            log_level="WARNING",
        ),
        plugins=plugins,
    )
    app.runtime.db.create_all()
    return app


def _exec(app: Any, sql: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    with app.runtime.db.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def _clear_alerts(app: Any) -> None:
    from sqlalchemy import text

    with app.runtime.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM fraud_alerts"))


# --------------------------------------------------------------------------- fraud


def seed_style_loop(session: Any, since: datetime, until: datetime, limit: int) -> int:
    """Baseline (a): the seed's approach, one ORM count query per transaction.

    As the original Django task did: for each transaction of the window, flag
    amounts above $10,000 and count the account's transactions in the hour
    before it (`Transaction.objects.filter(account=…, created_at__gte=…).count()`).
    """
    from sqlalchemy import func, select

    from core.models import Transaction

    large = Decimal("10000")
    flagged = 0
    transactions = session.scalars(
        select(Transaction)
        .where(Transaction.created_at >= since, Transaction.created_at < until)
        .order_by(Transaction.id)
        .limit(limit)
    ).all()
    for tx in transactions:
        if tx.amount > large:
            flagged += 1
        recent = session.scalar(
            select(func.count())
            .select_from(Transaction)
            .where(
                Transaction.account_id == tx.account_id,
                Transaction.created_at >= tx.created_at - timedelta(hours=1),
                Transaction.created_at <= tx.created_at,
            )
        )
        if recent > 10:
            flagged += 1
    return len(transactions)


def run_fraud(
    results: Results, ds: Dataset, redis_url: str, tmp: Path, reps: int, quick: bool
) -> None:
    import plugins.fraud

    backend = ds.backend
    col = _col(backend)
    app = _make_app(ds.url, redis_url, tmp / f"var-fraud-{backend}", ["fraud"])
    times: dict[int, list[float]] = {d: [] for d in SCALE_DAYS}
    scanned: dict[int, int] = {}
    alerts: dict[int, int] = {}
    for rep in range(reps):
        order = SCALE_DAYS if rep % 2 == 0 else SCALE_DAYS[::-1]
        for days in order:
            _clear_alerts(app)
            app.set_current()
            started = time.perf_counter()
            out = plugins.fraud.analyze_fraud_patterns(since=NOW - timedelta(days=days), until=NOW)
            times[days].append(time.perf_counter() - started)
            scanned[days], alerts[days] = out["scanned"], out["alerts_created"]
        log(
            f"fraud {backend} rep {rep + 1}: "
            + ", ".join(f"{d}d {times[d][-1]:.2f}s" for d in SCALE_DAYS)
        )
    _clear_alerts(app)
    full = SCALE_DAYS[-1]
    since_us, until_us = _micros(NOW - timedelta(days=full)), _micros(NOW)

    # (b): one aggregate over the same rows, and (info) over the whole table
    count_sql = (
        "SELECT count(*), sum(amount_minor) FROM transactions "
        "WHERE created_at >= :since AND created_at < :until"
    )
    _exec(app, count_sql, since=since_us, until=until_us)  # warm-up
    agg, agg_all = [], []
    for _ in range(reps):
        started = time.perf_counter()
        _exec(app, count_sql, since=since_us, until=until_us)
        agg.append(time.perf_counter() - started)
        started = time.perf_counter()
        _exec(app, "SELECT count(*), sum(amount_minor) FROM transactions")
        agg_all.append(time.perf_counter() - started)

    # (a): the per-row loop on a subset, extrapolated to the window
    subset = LOOP_SUBSET // 10 if quick else LOOP_SUBSET
    per_row = []
    for _ in range(reps):
        with app.runtime.db.session() as session:
            started = time.perf_counter()
            done = seed_style_loop(session, NOW - timedelta(days=full), NOW, subset)
            per_row.append((time.perf_counter() - started) / done)
    rows = scanned[full]
    loop = Sample([p * rows for p in per_row], "s")
    app.runtime.db.dispose()

    fraud = results.sample(
        f"fraud.{backend}.{full}d", Sample(times[full], "s"), rows=rows, alerts=alerts[full]
    )
    s_agg = results.sample(f"fraud.{backend}.count_sum", Sample(agg, "s"), rows=rows)
    s_all = results.sample(f"fraud.{backend}.count_sum_whole_table", Sample(agg_all, "s"))
    results.sample(f"fraud.{backend}.seed_loop_extrapolated", loop, measured_rows=subset, rows=rows)

    def add(key: str, figure: str, text: str, target: str = "", met: bool | None = None) -> None:
        results.row(key, figure, col, text, target, met, section=SECTION)

    add(
        "fraud.time",
        f"fraud analysis, {rows:,} transactions, 3 built-in rules ({alerts[full]} alerts)",
        fmt_sample(fraud),
    )
    add(
        "fraud.loop",
        f"  (a) seed-style loop, one ORM count per row: {subset:,} rows measured, extrapolated",
        f"{fmt_sample(loop)} ({fmt_num(per_row[len(per_row) // 2] * 1e6)} µs/row)",
    )
    r = ratio(loop, fraud)
    met = r["ratio"] >= 100
    results.compare(f"fraud.{backend}.speedup_vs_loop", r, "≥ 100×", met)
    add("fraud.vs_loop", "  speed-up over (a)", fmt_ratio(r), "≥ 100×", met)
    add("fraud.agg", "  (b) SELECT count(*), sum(amount) over the same rows", fmt_sample(s_agg))
    r = ratio(fraud, s_agg)
    met = r["ratio"] <= 20
    results.compare(f"fraud.{backend}.vs_count_sum", r, "≤ 20×", met)
    r_all = ratio(fraud, s_all)
    results.compare(f"fraud.{backend}.vs_count_sum_whole_table", r_all, "", None)
    add(
        "fraud.vs_agg",
        "  fraud ÷ (b) (÷ the same query without WHERE, whole table)",
        f"{fmt_ratio(r)} ({fmt_num(r_all['ratio'])}×, {fmt_seconds(s_all.median)})",
        "≤ 20×",
        met,
    )
    parts = []
    per = {}
    for days in SCALE_DAYS:
        s = results.sample(f"fraud.{backend}.{days}d", Sample(times[days], "s"), rows=scanned[days])
        per[days] = s.median / scanned[days]
        parts.append(f"{_k(scanned[days])}: {per[days] * 1e6:.2f}")
    growth = per[SCALE_DAYS[-1]] / per[SCALE_DAYS[0]]
    met = growth <= 1.5
    results.compare(f"fraud.{backend}.per_row_growth", {"ratio": growth}, "≤ 1.5", met)
    add(
        "fraud.scaling",
        f"fraud scaling, µs per row (windows of 3, 9, 30 days); {_k(scanned[SCALE_DAYS[-1]])} ÷ "
        f"{_k(scanned[SCALE_DAYS[0]])} per row",
        f"{'; '.join(parts)}; {growth:.2f}×",
        "near-linear (≤ 1.5×)",
        met,
    )


# --------------------------------------------------------------------------- reports


def run_reports(results: Results, ds: Dataset, redis_url: str, tmp: Path, reps: int) -> None:
    backend = ds.backend
    col = _col(backend)
    app = _make_app(ds.url, redis_url, tmp / f"var-reports-{backend}", None)  # all five plugins
    import plugins.reports

    start = datetime.combine(REPORT_DAY, datetime.min.time(), tzinfo=NOW.tzinfo)
    a, b = _micros(start), _micros(start + timedelta(days=1))
    hand_sql = (
        "SELECT kind, count(*), sum(amount_minor) FROM transactions "
        "WHERE created_at >= :a AND created_at < :b GROUP BY kind"
    )
    app.set_current()
    out = plugins.reports.generate_daily_reports(report_date=REPORT_DAY)  # warm-up
    _exec(app, hand_sql, a=a, b=b)
    report, hand = [], []
    for rep in range(reps):
        steps = ["report", "hand"] if rep % 2 == 0 else ["hand", "report"]
        for step in steps:
            started = time.perf_counter()
            if step == "report":
                app.set_current()
                out = plugins.reports.generate_daily_reports(report_date=REPORT_DAY)
                report.append(time.perf_counter() - started)
            else:
                _exec(app, hand_sql, a=a, b=b)
                hand.append(time.perf_counter() - started)
    app.runtime.db.dispose()
    count = out["totals"]["transactions"]
    s_rep = results.sample(
        f"reports.{backend}",
        Sample(report, "s"),
        rows=count,
        formats=sorted(out["files"]),
        sections=out["sections"],
    )
    s_hand = results.sample(f"reports.{backend}.hand_group_by", Sample(hand, "s"), rows=count)
    r = ratio(s_rep, s_hand)
    met = r["ratio"] <= 10
    results.compare(f"reports.{backend}.vs_hand", r, "≤ 10×", met)
    formats = ", ".join(sorted(out["files"]))
    sections = ", ".join(out["sections"])
    results.row(
        "reports.time",
        f"daily report of {REPORT_DAY} ({count:,} transactions; sections: {sections}; "
        f"formats: {formats})",
        col,
        fmt_sample(s_rep),
        section=SECTION,
    )
    results.row(
        "reports.hand",
        "  hand-written SELECT kind, count(*), sum(amount) … GROUP BY kind",
        col,
        fmt_sample(s_hand),
        section=SECTION,
    )
    results.row(
        "reports.ratio",
        "  report ÷ hand-written query",
        col,
        fmt_ratio(r),
        "≤ 10×",
        met,
        section=SECTION,
    )


# --------------------------------------------------------------------------- export


def export_sql(start_us: int, end_us: int) -> str:
    """The export's rows, raw, as a CLI user would write them (same join, filter and order)."""
    return (
        "SELECT t.id, t.created_at, a.number, t.kind, t.status, t.amount_minor, t.currency, "
        "t.counterparty, t.description FROM transactions t JOIN accounts a ON t.account_id = a.id "
        f"WHERE a.user_id = 1 AND t.created_at >= {int(start_us)} AND t.created_at < {int(end_us)} "
        "ORDER BY t.created_at, t.id"
    )


def _python_csv(ds: Dataset, sql: str, out: Path) -> int:
    """Reference: a bare csv.writer over a raw DB-API cursor (no formatting, no neutralising)."""
    rows = 0
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        if ds.backend == "sqlite":
            import sqlite3

            assert ds.path is not None
            conn = sqlite3.connect(ds.path)
            cursor = conn.execute(sql)
        else:
            import psycopg

            conn = psycopg.connect(ds.url.replace("postgresql+psycopg://", "postgresql://"))
            cursor = conn.cursor(name="bench_export")
            cursor.itersize = 5000
            cursor.execute(sql)
        writer.writerow([d[0] for d in cursor.description])
        while batch := cursor.fetchmany(5000):
            writer.writerows(batch)
            rows += len(batch)
        conn.close()
    return rows


def _cli_export(ds: Dataset, server: Any, sql: str, out: Path) -> tuple[float, int]:
    if ds.backend == "sqlite":
        assert ds.path is not None
        cmd = ["sqlite3", "-csv", "-header", str(ds.path), sql]
    else:
        psql = server.psql()
        if psql is None:
            raise RuntimeError("psql not found")
        cmd = [
            psql,
            "-X",
            "-q",
            server.libpq_url(ds.database),
            "-c",
            f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)",
        ]
    seconds, rss, _ = run_timed(cmd, stdout_path=out)
    return seconds, rss


def run_export(
    results: Results, ds: Dataset, server: Any, redis_url: str, tmp: Path, reps: int
) -> None:
    from sqlalchemy import text

    backend = ds.backend
    col = _col(backend)
    first_day = (NOW - timedelta(days=DAYS)).date()
    sizes = {d: (first_day, first_day + timedelta(days=d - 1)) for d in SCALE_DAYS}
    var = tmp / f"var-export-{backend}"
    var.mkdir(parents=True, exist_ok=True)
    out = tmp / f"baseline-{backend}.csv"
    full = SCALE_DAYS[-1]
    start_us = _micros(datetime.combine(first_day, datetime.min.time(), tzinfo=NOW.tzinfo))
    end_us = _micros(NOW)
    sql = export_sql(start_us, end_us)
    cli_missing = None
    if backend == "sqlite" and not _which("sqlite3"):
        cli_missing = "sqlite3 command-line tool not installed (apt-get install -y sqlite3)"
    elif backend == "postgresql" and server.psql() is None:
        cli_missing = "psql not installed (apt-get install -y postgresql-client)"

    runs: dict[int, list[dict[str, Any]]] = {d: [] for d in SCALE_DAYS}
    cli: list[float] = []
    cli_rss: list[int] = []
    py: list[float] = []
    if cli_missing is None:
        _cli_export(ds, server, sql, out)  # warm-up: page cache
    else:
        _python_csv(ds, sql, out)  # warm-up: page cache
    for rep in range(reps):
        order = list(SCALE_DAYS) if rep % 2 == 0 else list(SCALE_DAYS[::-1])
        for days in order:
            spec = {
                "database_url": ds.url,
                "redis_url": redis_url,
                "var_dir": str(var),
                "user_id": 1,
                "start_date": sizes[days][0].isoformat(),
                "end_date": sizes[days][1].isoformat(),
            }
            proc = subprocess.run(
                [sys.executable, "-m", "bench.child", json.dumps(spec)],
                capture_output=True,
                text=True,
                timeout=900,
                cwd=str(Path(__file__).resolve().parent.parent),
            )
            if proc.returncode != 0:
                raise RuntimeError(f"export child failed: {proc.stderr[-1500:]}")
            runs[days].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if cli_missing is None:
            seconds, rss = _cli_export(ds, server, sql, out)
            cli.append(seconds)
            cli_rss.append(rss)
        started = time.perf_counter()
        _python_csv(ds, sql, out)
        py.append(time.perf_counter() - started)
        log(
            f"export {backend} rep {rep + 1}: "
            + ", ".join(f"{d}d {runs[d][-1]['seconds']:.2f}s" for d in SCALE_DAYS)
            + (f"; cli {cli[-1]:.2f}s" if cli else "")
            + f"; python csv {py[-1]:.2f}s"
        )
    out.unlink(missing_ok=True)
    from sqlalchemy import create_engine

    engine = create_engine(ds.url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM export_exports"))
    engine.dispose()

    rows = runs[full][0]["rows"]
    plugin = results.sample(
        f"export.{backend}.{full}d",
        Sample([r["seconds"] for r in runs[full]], "s"),
        rows=rows,
        bytes=runs[full][0]["bytes"],
    )
    s_py = results.sample(f"export.{backend}.python_csv", Sample(py, "s"), rows=rows)

    def add(key: str, figure: str, text_: str, target: str = "", met: bool | None = None) -> None:
        results.row(key, figure, col, text_, target, met, section=SECTION)

    tool = "sqlite3 -csv" if backend == "sqlite" else "psql COPY … TO STDOUT CSV"
    add(
        "export.time",
        f"CSV export, {rows:,} rows (formula-injection neutralising on), task call",
        f"{fmt_sample(plugin)} ({plugin.median / rows * 1e6:.2f} µs/row)",
    )
    cli_figure = "  command-line export of the same rows: sqlite3 -csv | psql COPY … CSV"
    if cli_missing is None:
        s_cli = results.sample(f"export.{backend}.cli", Sample(cli, "s"), rows=rows, tool=tool)
        add("export.cli", cli_figure, fmt_sample(s_cli))
    else:
        add("export.cli", cli_figure, cli_missing)
        results.note(f"{_label(backend)} export baseline not measured: {cli_missing}")
    add(
        "export.pycsv",
        "  (info) bare Python csv.writer over a raw cursor, no formatting",
        fmt_sample(s_py),
    )
    if cli_missing is None:
        r = ratio(s_cli, plugin)  # speed relative to the CLI = CLI time ÷ our time
        met = r["ratio"] >= 0.4
        results.compare(f"export.{backend}.speed_vs_cli", r, "≥ 0.4", met, tool=tool)
        add(
            "export.vs_cli",
            "  export speed ÷ command-line tool's speed",
            fmt_ratio(r),
            "≥ 0.4",
            met,
        )
    r_py = ratio(s_py, plugin)
    results.compare(f"export.{backend}.speed_vs_python_csv", r_py, "", None)

    parts, rss_parts, per, peaks = [], [], {}, {}
    for days in SCALE_DAYS:
        n = runs[days][0]["rows"]
        s = results.sample(
            f"export.{backend}.{days}d",
            Sample([r["seconds"] for r in runs[days]], "s"),
            rows=n,
            peak_rss_kb=[r["peak_rss_kb"] for r in runs[days]],
            rss_before_kb=[r["rss_before_kb"] for r in runs[days]],
        )
        per[days] = s.median / n
        peaks[days] = max(r["peak_rss_kb"] for r in runs[days]) * 1024 / MB
        before = min(r["rss_before_kb"] for r in runs[days]) * 1024 / MB
        parts.append(f"{_k(n)}: {per[days] * 1e6:.2f}")
        rss_parts.append(f"{_k(n)}: {peaks[days]:.0f} MB (before {before:.0f})")
    growth = per[SCALE_DAYS[-1]] / per[SCALE_DAYS[0]]
    met = growth <= 1.5
    results.compare(f"export.{backend}.per_row_growth", {"ratio": growth}, "≤ 1.5", met)
    add(
        "export.scaling",
        f"export scaling, µs per row (3, 9, 30 days); {_k(runs[SCALE_DAYS[-1]][0]['rows'])} ÷ "
        f"{_k(runs[SCALE_DAYS[0]][0]['rows'])} per row",
        f"{'; '.join(parts)}; {growth:.2f}×",
        "near-linear (≤ 1.5×)",
        met,
    )
    small, large = peaks[SCALE_DAYS[0]], peaks[SCALE_DAYS[-1]]
    met = large < 100 and (large - small) <= 0.1 * small
    results.compare(
        f"export.{backend}.peak_rss",
        {"ratio": large / small, "peak_mb": large, "small_mb": small},
        "< 100 MB, flat",
        met,
    )
    add(
        "export.rss",
        "export peak RSS of the process (MB = 10⁶ bytes; before = after imports and app set-up)",
        "; ".join(rss_parts),
        "< 100 MB and flat (≤ +10%)",
        met,
    )


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


# --------------------------------------------------------------------------- chunks


def _machine_cpu() -> tuple[int, int]:
    """(total, idle) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def _tree_cpu(root: int) -> float:
    """CPU seconds used by process `root` and its descendants so far, from /proc: live
    threads' run time from schedstat (nanoseconds), reaped children through
    cutime/cstime (ticks); 0 if it is gone (see bench.scaling_bench.tree_cpu)."""
    from bench.scaling_bench import tree_cpu

    return tree_cpu(root)


def _our_cpu(worker_pid: int, backend: str) -> float:
    """CPU seconds of this run's worker and, on PostgreSQL, of the bench's own server."""
    used = _tree_cpu(worker_pid)
    if backend == "postgresql":
        from bench.pg import _cluster_dir

        with contextlib.suppress(OSError, ValueError, IndexError):
            pid_file = _cluster_dir() / "data" / "postmaster.pid"
            used += _tree_cpu(int(pid_file.read_text().split()[0]))
    return used


def _alert_keys(app: Any) -> set[tuple[str, str]]:
    """(rule, dedup_key) of every stored alert."""
    return {(r[0], r[1]) for r in _exec(app, "SELECT rule, dedup_key FROM fraud_alerts")}


PROCESSES = (1, 2, 4)  # worker processes (prefork -c) for the chunked analysis


def _listening(app: Any, single: Any) -> None:
    """Return once the worker consumes the fraud queue: a task over one second of data.

    After `add_consumer` the worker's blocking BRPOP on its idle queue ends within 1 s;
    waiting for a tiny task replaces a fixed sleep. Its alerts (if any) are deleted.
    """
    single.delay(since=NOW - timedelta(seconds=1), until=NOW).get(timeout=300, interval=0.01)
    _clear_alerts(app)


def run_chunks(results: Results, ds: Dataset, redis_url: str, tmp: Path, reps: int) -> None:
    """`analyze_fraud_patterns_chunked(since, until, chunks=CHUNKS)` over the 30-day window
    on 1, 2 and 4 worker processes, against one `analyze_fraud_patterns` task on 1.

    The chunked task replaces itself by a chord of CHUNKS slice tasks and a callback
    that adds them up; its result is that sum. The alerts it stores are compared with
    those of the single task, key by key. During the runs on more than one process the
    machine's CPU use is read from /proc/stat: how busy it was, how many CPUs the
    worker and its database server used, and how many other processes used.
    """
    import plugins.fraud

    backend = ds.backend
    col = _col(backend)
    app = _make_app(ds.url, redis_url, tmp / f"var-chunks-{backend}", ["fraud"])
    env_common = {"BANKTASKS_PLUGINS": "fraud", "LOG_LEVEL": "WARNING", "DATABASE_URL": ds.url}
    logdir = tmp / "logs"
    logdir.mkdir(exist_ok=True)
    since = NOW - timedelta(days=DAYS)
    single = plugins.fraud.analyze_fraud_patterns
    chunked = plugins.fraud.analyze_fraud_patterns_chunked

    workers = {}
    configs = ["whole_c1", *(f"chunked_c{c}" for c in PROCESSES)]
    times: dict[str, list[float]] = {config: [] for config in configs}
    multi = [c for c in PROCESSES if c > 1]
    machine_busy: dict[int, list[float]] = {c: [] for c in multi}
    ours_cpus: dict[int, list[float]] = {c: [] for c in multi}  # CPUs the worker + DB used
    others: dict[int, list[float]] = {c: [] for c in multi}  # CPUs other processes used
    created: dict[str, dict[str, int]] = {}
    keys: dict[str, set[tuple[str, str]]] = {}
    with ExitStack() as stack:
        for c in PROCESSES:
            env = banktasks_env(tmp, redis_url, f"chunks-{backend}-c{c}", **env_common)
            worker = start_controlled(
                app, "core", f"chunks{backend}{c}", "fraud", env, logdir, concurrency=c
            )
            stack.callback(worker.proc.stop)
            workers[c] = worker
        for worker in workers.values():  # warm-up: each pool process runs its first tasks
            app.set_current()
            worker.consume(True)
            try:
                for _ in range(2):
                    tiny = chunked.delay(since=NOW - timedelta(hours=CHUNKS), until=NOW)
                    tiny.get(timeout=300, interval=0.01)
            finally:
                worker.consume(False)
        for rep in range(reps):
            order = configs if rep % 2 == 0 else configs[::-1]
            for config in order:
                processes = int(config.rsplit("_c", 1)[1])
                worker = workers[processes]
                _clear_alerts(app)
                app.set_current()
                worker.consume(True)
                try:
                    _listening(app, single)
                    cpu0, ours0 = _machine_cpu(), _our_cpu(worker.proc.proc.pid, backend)
                    started = time.perf_counter()
                    if config == "whole_c1":
                        task = single.delay(since=since, until=NOW)
                    else:
                        task = chunked.delay(since=since, until=NOW, chunks=CHUNKS)
                    out = task.get(timeout=900, interval=0.01)
                    elapsed = time.perf_counter() - started
                    times[config].append(elapsed)
                    cpu1, ours1 = _machine_cpu(), _our_cpu(worker.proc.proc.pid, backend)
                    if config != "whole_c1" and processes > 1:
                        busy_share = 1 - (cpu1[1] - cpu0[1]) / max(1, cpu1[0] - cpu0[0])
                        machine_busy[processes].append(busy_share)
                        cpus = os.cpu_count() or 1
                        ours = (ours1 - ours0) / elapsed
                        ours_cpus[processes].append(ours)
                        others[processes].append(max(0.0, busy_share * cpus - ours))
                finally:
                    worker.consume(False)
                created[config] = out["by_rule"]
                keys[config] = _alert_keys(app)
            log(
                f"chunks {backend} rep {rep + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
            )
    _clear_alerts(app)
    app.runtime.db.dispose()
    s = {
        k: results.sample(f"chunks.{backend}.{k}", Sample(v, "s"), alerts_by_rule=created[k])
        for k, v in times.items()
    }
    speedups = {}
    for c in multi:
        speedups[c] = ratio(s["chunked_c1"], s[f"chunked_c{c}"])
        results.compare(
            f"chunks.{backend}.speedup_{c}_workers",
            speedups[c],
            "",
            None,
            machine_cpu_busy=machine_busy[c],
            worker_and_database_cpus=ours_cpus[c],
            other_processes_cpus=others[c],
        )
    overhead = ratio(s["chunked_c1"], s["whole_c1"])
    whole = keys["whole_c1"]
    chunked_configs = [config for config in configs if config != "whole_c1"]
    differ = {
        config: (len(keys[config] - whole), len(whole - keys[config]))
        for config in chunked_configs
        if keys[config] != whole or created[config] != created["whole_c1"]
    }
    results.compare(
        f"chunks.{backend}.alerts",
        {
            "whole": created["whole_c1"],
            **{config: created[config] for config in chunked_configs},
            "alerts": len(whole),
            "differ (extra, missing)": differ,
        },
        "same alerts",
        not differ,
    )
    results.row(
        "chunks.times",
        f"fraud, {DAYS}-day window through workers: one task on 1 process | "
        f"analyze_fraud_patterns_chunked, {CHUNKS} slices, on "
        + " | on ".join(str(c) for c in PROCESSES)
        + " processes",
        col,
        f"{fmt_seconds(s['whole_c1'].median)} | "
        + " | ".join(fmt_sample(s[f"chunked_c{c}"]) for c in PROCESSES),
        section=SECTION,
    )
    cpus = os.cpu_count() or 1
    parts = [
        f"{c}: {fmt_ratio(speedups[c])} ({statistics.median(machine_busy[c]):.0%} busy; "
        f"worker + DB {fmt_num(statistics.median(ours_cpus[c]), 2)}, others "
        f"{fmt_num(statistics.median(others[c]), 2)} of {cpus} CPUs)"
        for c in multi
    ]
    results.row(
        "chunks.speedup",
        "  speed-up over 1 process with "
        + " and ".join(str(c) for c in multi)
        + " processes (the machine's CPU busy during it; CPUs the worker and its database "
        "used, and other processes; chunked on 1 ÷ one task)",
        col,
        "; ".join(parts) + f"; {fmt_num(overhead['ratio'])}×",
        section=SECTION,
    )
    results.row(
        "chunks.alerts",
        "  alerts of the chunked analysis vs one task's, key by key",
        col,
        f"same {len(whole):,} alerts"
        if not differ
        else "DIFFER: " + "; ".join(f"{c}: {x} extra, {m} missing" for c, (x, m) in differ.items()),
        "same alerts",
        not differ,
        section=SECTION,
    )


# --------------------------------------------------------------------------- driver


def run_database_sections(
    results: Results,
    stack: ExitStack,
    redis_url: str,
    tmp: Path,
    wanted: list[str],
    reps: int,
    quick: bool,
    with_pg: bool,
    meta: dict[str, Any],
) -> None:
    rows = 100_000 if quick else 1_000_000
    backends: list[tuple[str, Any]] = [("sqlite", None)]
    if with_pg:
        from bench.pg import PgServer, PgUnavailable

        server = PgServer()
        try:
            server.start()
            stack.callback(server.stop)
            meta["postgresql"] = server.version()
            backends.append(("postgresql", server))
        except (PgUnavailable, OSError, subprocess.SubprocessError) as exc:
            meta["postgresql"] = f"unavailable: {exc}"
            results.note(f"PostgreSQL column: unavailable: {exc}")
    else:
        meta["postgresql"] = "skipped (--no-postgres)"

    pg_main: Dataset | None = None
    pg_missing = str(meta.get("postgresql", "not run"))
    for backend, server in backends:
        label = _label(backend)
        base = 7 if backend == "sqlite" else 11
        if backend == "sqlite" and not set(wanted) - {"scaling"}:
            continue  # scaling uses the PostgreSQL data set only
        try:
            if backend == "sqlite":
                main = sqlite_dataset("main", rows, redis_url, tmp)
            else:
                main = pg_dataset(server, "main", rows, redis_url, tmp)
        except Exception as exc:
            results.errors[f"data {label}"] = f"{type(exc).__name__}: {exc}"
            if backend == "postgresql":
                pg_missing = f"no PostgreSQL data set: {exc}"
            continue
        if backend == "postgresql":
            pg_main = main
        meta["dataset"] = (
            f"{main.summary['transactions']:,} transactions over {DAYS} days (until {NOW.date()}), "
            f"{main.summary['accounts']:,} accounts, {main.summary['users']:,} users, seed 7, "
            "planted "
            "fraud; the export exports the same number of rows owned by one user"
        )
        for name, func, args in (
            ("fraud", run_fraud, (results, main, with_db(redis_url, base), tmp, reps, quick)),
            ("reports", run_reports, (results, main, with_db(redis_url, base + 1), tmp, reps)),
            ("chunks", run_chunks, (results, main, with_db(redis_url, base + 2), tmp, reps)),
        ):
            if name in wanted:
                _guarded(results, f"{name} {label}", func, *args)
        if "export" in wanted:
            try:
                if backend == "sqlite":
                    exp = sqlite_dataset("export", rows, redis_url, tmp)
                else:
                    exp = pg_dataset(server, "export", rows, redis_url, tmp)
            except Exception as exc:
                results.errors[f"export data {label}"] = f"{type(exc).__name__}: {exc}"
                continue
            _guarded(
                results,
                f"export {label}",
                run_export,
                results,
                exp,
                server,
                with_db(redis_url, base + 3),
                tmp,
                reps,
            )
    if "scaling" in wanted:
        from bench.scaling_bench import run_scaling

        _guarded(
            results,
            "scaling",
            run_scaling,
            results,
            pg_main,
            pg_missing,
            redis_url,
            tmp,
            reps,
            quick,
        )


def _guarded(results: Results, name: str, func: Any, *args: Any) -> None:
    import traceback

    started = time.perf_counter()
    log(f"{name}: start")
    try:
        func(*args)
    except Exception as exc:
        results.errors[name] = f"{type(exc).__name__}: {exc}"
        log(f"{name} FAILED: {exc}\n{traceback.format_exc()}")
        return
    log(f"{name}: done in {time.perf_counter() - started:.1f}s")
