"""`python -m bench`: run the sections, print one table, write results.json and the README table."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import traceback
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.util import BENCH, DATA, Results, log, machine

SECTIONS = [
    "celery",
    "metrics",
    "bulk",
    "delivery",
    "ready",
    "broker",
    "fraud",
    "chunks",
    "reports",
    "export",
    "scaling",
    "mapping",
    "rules",
]
DB_SECTIONS = {"fraud", "chunks", "reports", "export", "scaling"}
"""Run by bench.db_bench.run_database_sections (scaling: for its PostgreSQL data set)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="banktasks benchmarks: one table, bench/results.json, bench/README.md",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full run: 1M transactions, more tasks (records bench/results.json and the "
        "README table); without it, the default run: 100k transactions, fewer tasks, < 5 min "
        "(+ ~1 min for the mapping section, at 1M transactions in both runs)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the default run (kept for old command lines)"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma list of sections to run: {', '.join(SECTIONS)} (results go to bench/.data/)",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (>= 3)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL column")
    args = parser.parse_args(argv)
    if args.reps < 3:
        parser.error("--reps must be at least 3 (every figure is a median of >= 3 repetitions)")
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.full and args.quick:
        parser.error("--full and --quick exclude each other")
    args.quick = not args.full
    args.sections = only or list(SECTIONS)
    args.partial = bool(only) or args.quick
    return args


def _guard(results: Results, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one section; an error is recorded and shown, the other sections still run."""
    started = time.perf_counter()
    log(f"section {name}: start")
    try:
        value = func(*args, **kwargs)
    except Exception as exc:
        results.errors[name] = f"{type(exc).__name__}: {exc}"
        log(f"section {name} FAILED: {exc}\n{traceback.format_exc()}")
        return None
    log(f"section {name}: done in {time.perf_counter() - started:.1f}s")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    from core.logging import configure_logging

    configure_logging("console", "WARNING")
    results = Results()
    meta = machine()
    meta["started"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["mode"] = "quick" if args.quick else "full"
    meta["reps"] = args.reps
    meta["celery_reps"] = max(args.reps, 5)
    meta["sections"] = args.sections
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="banktasks-bench-"))
    log(f"scratch directory {tmp}")

    from core.default_plugins.broker import EmbeddedValkey

    with ExitStack() as stack:
        valkey = EmbeddedValkey(tmp / "broker")
        url = valkey.ensure_running()
        stack.callback(valkey.stop)
        meta["valkey"] = _valkey_version(url)

        if "celery" in args.sections:
            from bench.celery_bench import run_overhead

            _guard(
                results, "celery", run_overhead, results, url, tmp, meta["celery_reps"], args.quick
            )
        if "metrics" in args.sections:
            from bench.metrics_bench import run_metrics

            _guard(results, "metrics", run_metrics, results, url, tmp, args.reps, args.quick)
        if "bulk" in args.sections:
            from bench.bulk_bench import run_bulk

            _guard(results, "bulk", run_bulk, results, url, tmp, args.reps, args.quick)
        if "delivery" in args.sections:
            from bench.delivery_bench import run_delivery

            _guard(
                results,
                "delivery",
                run_delivery,
                results,
                url,
                tmp,
                args.reps,
                meta["celery_reps"],
                args.quick,
            )
        if "ready" in args.sections:
            from bench.startup_bench import run_pool, run_ready

            _guard(results, "ready", run_ready, results, url, tmp, meta["celery_reps"])
            _guard(results, "pool", run_pool, results, url, tmp, args.reps)
        if "broker" in args.sections:
            from bench.celery_bench import run_broker_ceiling

            _guard(results, "broker", run_broker_ceiling, results, url, args.reps, args.quick)

        wanted_db = [s for s in args.sections if s in DB_SECTIONS]
        if wanted_db:
            from bench.db_bench import run_database_sections

            # its PostgreSQL server stops when these sections end (`mapping` starts its own)
            with ExitStack() as db_stack:
                _guard(
                    results,
                    "database",
                    run_database_sections,
                    results,
                    db_stack,
                    url,
                    tmp,
                    wanted_db,
                    args.reps,
                    args.quick,
                    not args.no_postgres,
                    meta,
                )
        if "mapping" in args.sections:
            from bench.mapping_bench import run_mapping

            _guard(
                results,
                "mapping",
                run_mapping,
                results,
                url,
                tmp,
                args.reps,
                not args.no_postgres,
                meta,
            )
        if "rules" in args.sections:
            from bench.fraud_bench import run_rules_section

            _guard(
                results,
                "rules",
                run_rules_section,
                results,
                url,
                tmp,
                args.reps,
                not args.no_postgres,
                meta,
            )

    meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    meta["loadavg_end"] = list(os.getloadavg())

    from bench.table import render_table, write_dated_table, write_outputs

    table = render_table(results, meta)
    print(table)
    write_outputs(results, meta, table, partial=args.partial)
    dated = write_dated_table(meta, table, partial=bool(args.only))
    log(f"table written to {dated.relative_to(BENCH.parent)}")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"finished in {meta['elapsed_s']}s")
    return 1 if results.errors else 0


def _valkey_version(url: str) -> str:
    import redis

    try:
        info = redis.Redis.from_url(url).info("server")
        return str(info.get("valkey_version") or info.get("redis_version"))
    except Exception:
        return "unknown"


__all__ = ["BENCH", "json", "main"]
