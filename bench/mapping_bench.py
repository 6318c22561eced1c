"""DATA_MAPPING: fraud analysis, the daily report and the CSV export on the same data in
banktasks' own tables (native) and in a bank's own schema read through `DATA_MAPPING`
(mapped), on SQLite and PostgreSQL; the results must be identical.

The bank's copy is `banktasks_testing.bankschema` (a Django-shaped schema: decimal
amounts, timestamps, upper-case kinds and statuses) filled from the cached data set,
with the indexes `core.sources.recommended_indexes` prints (`banktasks db indexes`);
see bench/data.py. The mapped app is set up as a bank would: on SQLite banktasks' own
tables in a file of their own and the bank's tables read from another; on PostgreSQL
one database, the bank's tables in `public` and banktasks' in the schema `banktasks`.
Everything else (plugins, settings, Valkey database) is the same for both variants.

A result that differs between native and mapped fails the section (an error in the
table, exit status 1), after its figures are recorded.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.celery_bench import with_db
from bench.data import (
    DAYS,
    NOW,
    BankCopy,
    Dataset,
    pg_bank_copy,
    pg_dataset,
    sqlite_bank_copy,
    sqlite_dataset,
)
from bench.db_bench import REPORT_DAY, _col, _label
from bench.util import ROOT, Results, Sample, fmt_num, fmt_ratio, fmt_sample, log, ratio

SECTION = (
    "Data mapping: the same data in a bank's own tables read through DATA_MAPPING "
    "÷ banktasks' own tables (SQLite | PostgreSQL)"
)
ROWS = 1_000_000
"""Transactions of the section's data sets, in the default run too (the issue's 1M)."""
REDIS_DB = 15
OWN_SCHEMA = "banktasks"  # PostgreSQL: banktasks' own tables next to the bank's (`public`)
MB = 1_000_000


class MappingMismatch(AssertionError):
    """The mapped variant gave another result than the native one."""


# --------------------------------------------------------------------------- apps


def mapped_settings(bank: BankCopy, tmp: Path) -> dict[str, Any]:
    """Core settings of the mapped variant (DATABASE_URL included)."""
    from banktasks_testing.bankschema import BANK_MAPPING

    mapping: dict[str, Any] = json.loads(json.dumps(BANK_MAPPING))
    if bank.backend == "postgresql":
        mapping["schema"] = "public"
        return {"database_url": bank.url, "database_schema": OWN_SCHEMA, "data_mapping": mapping}
    own = tmp / f"mapping-own-{bank.kind}.db"
    return {
        "database_url": f"sqlite:///{own}",
        "data_database_url": bank.url,
        "data_mapping": mapping,
    }


def _app(settings: dict[str, Any], redis_url: str, var: Path, plugins: list[str] | None) -> Any:
    from core import create_app, load_settings
    from core.factory import check_data_mapping

    var.mkdir(parents=True, exist_ok=True)
    app = create_app(
        load_settings(
            redis_url=redis_url,
            banktasks_var_dir=str(var),
            banktasks_config=str(var / "none.toml"),
            log_level="WARNING",
            **settings,
        ),
        plugins=plugins,
    )
    check_data_mapping(app.runtime)
    app.runtime.db.create_all()
    return app


def _apps(
    native: Dataset, bank: BankCopy, redis_url: str, tmp: Path, what: str, plugins: Any
) -> dict[str, Any]:
    apps = {
        "native": _app(
            {"database_url": native.url}, redis_url, tmp / f"var-map-{what}-native", plugins
        ),
        "mapped": _app(
            mapped_settings(bank, tmp), redis_url, tmp / f"var-map-{what}-mapped", plugins
        ),
    }
    if apps["native"].runtime.data.mapped or not apps["mapped"].runtime.data.mapped:
        raise RuntimeError("the native app reads a mapping, or the mapped app does not")
    return apps


def _dispose(apps: dict[str, Any]) -> None:
    for app in apps.values():
        app.runtime.db.dispose()
        if app.runtime.data_db is not None:
            app.runtime.data_db.dispose()


def _warm(apps: dict[str, Any]) -> None:
    """Read every transaction once through each app (page cache), untimed."""
    from sqlalchemy import func, select

    for app in apps.values():
        app.set_current()
        t = app.runtime.data.transactions
        with app.runtime.data_session() as session:
            session.execute(select(func.count(), func.sum(t.c.amount_minor))).one()


def _clear(app: Any, model: Any) -> None:
    """Delete a plugin table's rows (through the ORM: the schema translation applies)."""
    from sqlalchemy import delete

    with app.runtime.db.session() as session:
        session.execute(delete(model))


def _order(rep: int) -> list[str]:
    return ["native", "mapped"] if rep % 2 == 0 else ["mapped", "native"]


def _describe(a: Any, b: Any, limit: int = 3) -> str:
    """How the mapped result `b` differs from the native `a` (sets: extra and missing
    members; texts: the first differing line)."""
    if isinstance(a, set) and isinstance(b, set):
        extra, missing = sorted(b - a, key=repr), sorted(a - b, key=repr)
        return (
            f"{len(extra)} extra, {len(missing)} missing in mapped "
            f"(e.g. extra {extra[:limit]}, missing {missing[:limit]})"
        )
    lines_a, lines_b = str(a).splitlines(), str(b).splitlines()
    for number, (x, y) in enumerate(zip(lines_a, lines_b, strict=False), start=1):
        if x != y:
            pairs = enumerate(zip(x, y, strict=False))
            at = next((i for i, (c, d) in pairs if c != d), min(len(x), len(y)))
            lo = max(0, at - 60)
            return f"line {number}: native {x[lo : at + 60]!r}, mapped {y[lo : at + 60]!r}"
    return f"{len(lines_a)} lines native, {len(lines_b)} mapped"


def _check(what: str, runs: dict[str, list[Any]], show: Any, problems: list[str]) -> None:
    """Every repetition of both variants against native's first; a difference is one line
    per distinct difference (`show(native, other)`), naming the repetitions."""
    reference = runs["native"][0]
    for variant, values in runs.items():
        bad: dict[str, list[str]] = {}
        for rep, value in enumerate(values, start=1):
            if value != reference:
                bad.setdefault(show(reference, value), []).append(str(rep))
        for detail, reps in bad.items():
            problems.append(f"{what} {variant} rep {'+'.join(reps)}: {detail}")


# --------------------------------------------------------------------------- the three tasks


def _alerts(app: Any) -> set[tuple[Any, ...]]:
    """(rule, account_id, transaction_id, dedup_key, evidence) of every stored alert."""
    from sqlalchemy import select

    from plugins.fraud.models import FraudAlert as A

    with app.runtime.db.session() as session:
        rows = session.execute(
            select(A.rule, A.account_id, A.transaction_id, A.dedup_key, A.evidence)
        ).all()
    return {(*row[:4], json.dumps(row[4], sort_keys=True)) for row in rows}


def time_fraud(
    native: Dataset, bank: BankCopy, redis_url: str, tmp: Path, reps: int, problems: list[str]
) -> dict[str, Any]:
    """`analyze_fraud_patterns` over the whole data window, native and mapped."""
    import plugins.fraud
    from plugins.fraud.models import FraudAlert

    apps = _apps(native, bank, redis_url, tmp, "fraud", ["fraud"])
    _warm(apps)
    since = NOW - timedelta(days=DAYS)
    times: dict[str, list[float]] = {"native": [], "mapped": []}
    seen: dict[str, list[tuple[int, set[tuple[Any, ...]]]]] = {"native": [], "mapped": []}
    for rep in range(reps):
        for variant in _order(rep):
            app = apps[variant]
            _clear(app, FraudAlert)
            app.set_current()
            started = time.perf_counter()
            out = plugins.fraud.analyze_fraud_patterns(since=since, until=NOW)
            times[variant].append(time.perf_counter() - started)
            seen[variant].append((out["scanned"], _alerts(app)))
        log(
            f"mapping fraud {bank.backend} rep {rep + 1}: native {times['native'][-1]:.2f}s, "
            f"mapped {times['mapped'][-1]:.2f}s"
        )
    for app in apps.values():
        _clear(app, FraudAlert)
    _dispose(apps)
    scanned, alerts = seen["native"][0]

    def show(a: Any, b: Any) -> str:
        if a[0] != b[0]:
            return f"scanned {b[0]:,} ≠ {a[0]:,}"
        return f"alerts: {_describe(a[1], b[1])}"

    _check("fraud", seen, show, problems)
    return {"times": times, "rows": scanned, "alerts": len(alerts)}


def _report_content(out: dict[str, Any]) -> str:
    """Totals, section names and the JSON file without generated_at, as one text."""
    report = json.loads(Path(out["files"]["json"]).read_text())
    report.pop("generated_at", None)
    return json.dumps(
        {"totals": out["totals"], "sections": out["sections"], "report": report}, sort_keys=True
    )


def time_report(
    native: Dataset, bank: BankCopy, redis_url: str, tmp: Path, reps: int, problems: list[str]
) -> dict[str, Any]:
    """`generate_daily_reports(REPORT_DAY)` with all five plugins, native and mapped."""
    import plugins.reports
    from plugins.fraud.models import FraudAlert

    apps = _apps(native, bank, redis_url, tmp, "reports", None)  # all five plugins
    times: dict[str, list[float]] = {"native": [], "mapped": []}
    contents: dict[str, list[str]] = {"native": [], "mapped": []}
    count = 0
    for app in apps.values():  # the same (no) alerts in both, for the fraud section
        _clear(app, FraudAlert)
        app.set_current()
        plugins.reports.generate_daily_reports(report_date=REPORT_DAY)  # warm-up
    for rep in range(reps):
        for variant in _order(rep):
            app = apps[variant]
            app.set_current()
            started = time.perf_counter()
            out = plugins.reports.generate_daily_reports(report_date=REPORT_DAY)
            times[variant].append(time.perf_counter() - started)
            if "json" not in out["files"]:
                raise RuntimeError(f"the report has no JSON file to compare: {out['files']}")
            if any(out["errors"].values()):
                problems.append(f"report {variant}: errors {out['errors']}")
            contents[variant].append(_report_content(out))
            count = out["totals"]["transactions"]
    _dispose(apps)
    reference = contents["native"][0]
    _check("report", contents, _describe, problems)
    return {
        "times": times,
        "rows": count,
        "sha256": hashlib.sha256(reference.encode()).hexdigest(),
    }


def _export_child(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=str(ROOT),
    )
    if proc.returncode != 0:
        log(f"export child failed:\n{proc.stderr[-3000:]}")
        last = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise RuntimeError(f"export child failed: {last[0][:300]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def time_export(
    native: Dataset, bank: BankCopy, redis_url: str, tmp: Path, reps: int, problems: list[str]
) -> dict[str, Any]:
    """`export_transaction_data(user_id=1, …, "csv")` of the whole export data set, in a
    fresh process per repetition (bench/child.py, as the `export` section), native and
    mapped."""
    from plugins.export.models import ExportRecord

    first_day = (NOW - timedelta(days=DAYS)).date()
    settings = mapped_settings(bank, tmp)
    specs = {}
    for variant in ("native", "mapped"):
        var = tmp / f"var-map-export-{variant}"
        var.mkdir(parents=True, exist_ok=True)
        extra = dict(settings) if variant == "mapped" else {"database_url": native.url}
        specs[variant] = {
            "database_url": extra.pop("database_url"),
            "redis_url": redis_url,
            "var_dir": str(var),
            "user_id": 1,
            "start_date": first_day.isoformat(),
            "end_date": (first_day + timedelta(days=DAYS - 1)).isoformat(),
            "settings": extra,
        }
    apps = _apps(native, bank, redis_url, tmp, "export", ["export"])  # tables, clean-up
    _warm(apps)
    runs: dict[str, list[dict[str, Any]]] = {"native": [], "mapped": []}
    kept: dict[str, Path] = {}  # native's first file, and a file that differs from it
    for rep in range(reps):
        for variant in _order(rep):
            run = _export_child({**specs[variant], "keep": True})
            runs[variant].append(run)
            path = Path(run.pop("path"))
            first = runs["native"][0] if runs["native"] else None
            if variant == "native" and "native" not in kept:
                kept["native"] = path
            elif first is not None and run["sha256"] != first["sha256"] and "other" not in kept:
                kept["other"] = path
            else:
                path.unlink()
        log(
            f"mapping export {bank.backend} rep {rep + 1}: "
            f"native {runs['native'][-1]['seconds']:.2f}s, "
            f"mapped {runs['mapped'][-1]['seconds']:.2f}s"
        )
    for app in apps.values():
        _clear(app, ExportRecord)
    _dispose(apps)
    reference = runs["native"][0]
    files = {
        v: [(r["rows"], r["bytes"], r["sha256"][:12]) for r in done] for v, done in runs.items()
    }
    _check("export", files, lambda a, b: f"(rows, bytes, sha256) {b} ≠ {a}", problems)
    if "other" in kept:  # unequal files: where they part (the first line that differs)
        problems.insert(
            0,
            "export files: "
            + _describe(kept["native"].read_text(), kept["other"].read_text())
            + f" ({_count_lines(kept['native'], kept['other'])} lines differ)",
        )
    for path in kept.values():
        path.unlink()
    return {
        "times": {v: [r["seconds"] for r in done] for v, done in runs.items()},
        "rss": {v: [r["peak_rss_kb"] for r in done] for v, done in runs.items()},
        "rows": reference["rows"],
        "bytes": reference["bytes"],
        "sha256": reference["sha256"],
    }


def _count_lines(a: Path, b: Path) -> int:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return sum(x != y for x, y in zip(fa, fb, strict=False))


# --------------------------------------------------------------------------- one backend


def _size(bank: BankCopy | Dataset, server: Any) -> int:
    if bank.backend == "sqlite":
        assert bank.path is not None
        return bank.path.stat().st_size
    from sqlalchemy import create_engine, text

    engine = create_engine(f"{server.url}/postgres")
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(text("SELECT pg_database_size(:d)"), {"d": bank.database}).scalar_one()
            )
    finally:
        engine.dispose()


def run_backend(
    results: Results,
    main: Dataset,
    export: Dataset,
    server: Any,
    redis_url: str,
    tmp: Path,
    reps: int,
) -> None:
    """Copy (or reuse the cached copies), time the three tasks both ways, record the rows;
    raise MappingMismatch at the end if any result differed."""
    backend = main.backend
    col = _col(backend)
    banks = {}
    for ds in (main, export):
        banks[ds.kind] = sqlite_bank_copy(ds) if backend == "sqlite" else pg_bank_copy(server, ds)
    problems: list[str] = []
    fraud = time_fraud(main, banks["main"], redis_url, tmp, reps, problems)
    report = time_report(main, banks["main"], redis_url, tmp, reps, problems)
    exported = time_export(export, banks["export"], redis_url, tmp, reps, problems)

    def add(key: str, figure: str, text: str, target: str = "", met: bool | None = None) -> None:
        results.row(key, figure, col, text, target, met, section=SECTION)

    def pair(name: str, measured: dict[str, Any], figure: str, **extra: Any) -> None:
        s = {
            v: results.sample(
                f"mapping.{backend}.{name}.{v}", Sample(measured["times"][v], "s"), **extra
            )
            for v in ("native", "mapped")
        }
        r = ratio(s["mapped"], s["native"])
        results.compare(f"mapping.{backend}.{name}.mapped_vs_native", r, "", None)
        add(f"mapping.{name}", f"{figure}: native; mapped", _both(s["native"], s["mapped"]))
        add(f"mapping.{name}.ratio", "  mapped ÷ native", fmt_ratio(r))

    pair(
        "fraud",
        fraud,
        f"fraud analysis over the {DAYS}-day window ({fraud['rows']:,} transactions, "
        f"{fraud['alerts']} alerts)",
        rows=fraud["rows"],
        alerts=fraud["alerts"],
    )
    pair(
        "report",
        report,
        f"daily report of {REPORT_DAY} ({report['rows']:,} transactions, all five plugins)",
        rows=report["rows"],
    )
    pair(
        "export",
        exported,
        f"CSV export of user 1, {exported['rows']:,} rows (a fresh process each)",
        rows=exported["rows"],
        bytes=exported["bytes"],
        peak_rss_kb=exported["rss"],
    )
    rss = {v: max(exported["rss"][v]) * 1024 / MB for v in ("native", "mapped")}
    add(
        "mapping.export.rss",
        "  export peak RSS: native; mapped",
        f"{rss['native']:.0f} MB; {rss['mapped']:.0f} MB",
    )
    same = not problems
    results.compare(
        f"mapping.{backend}.identical",
        {
            "alerts": fraud["alerts"],
            "report_sha256": report["sha256"],
            "export_sha256": exported["sha256"],
            "problems": problems,
        },
        "identical",
        same,
    )
    add(
        "mapping.identical",
        "results native vs mapped, every repetition: alerts (rule, account, transaction, "
        "dedup key, evidence); report totals, sections and JSON without generated_at; "
        "export file SHA-256",
        f"same: {fraud['alerts']} alerts; report {report['sha256'][:12]}; "
        f"export {exported['sha256'][:12]} ({exported['bytes'] / MB:,.0f} MB)"
        if same
        else f"DIFFER ({len(problems)}): " + "; ".join(problems)[:400],
        "identical",
        same,
    )
    build = banks["main"].build
    sizes = {k: _size(b, server) / MB for k, b in banks.items()}
    native_size = _size(main, server) / MB
    results.compare(
        f"mapping.{backend}.copy",
        {
            **{k: b.build for k, b in banks.items()},
            "bank_size_mb": sizes,
            "native_main_size_mb": native_size,
        },
        "",
        None,
    )
    counts = build["counts"]
    add(
        "mapping.copy",
        "(info) one-off copy of the main data set into the bank schema (copy_from_native; "
        f"built {build['built'][:10]}): rows/s; the {len(build['indexes'])} recommended "
        "indexes; size of the copy (native data set's size)",
        f"{sum(counts.values()):,} rows in {fmt_num(build['copy_s'])} s = "
        f"{fmt_num(build['rows_per_s'])} rows/s; indexes {fmt_num(build['index_s'])} s; "
        f"{sizes['main']:,.0f} MB ({native_size:,.0f} MB)",
    )
    if problems:
        raise MappingMismatch(
            f"{_label(backend)}: mapped results differ from native: " + "; ".join(problems)
        )


def _both(native: Sample, mapped: Sample) -> str:
    return f"{fmt_sample(native)}; {fmt_sample(mapped)}"


# --------------------------------------------------------------------------- driver


def run_mapping(
    results: Results,
    redis_url: str,
    tmp: Path,
    reps: int,
    with_pg: bool,
    meta: dict[str, Any],
    rows: int = ROWS,
) -> None:
    """The `mapping` section on SQLite and (unless --no-postgres) PostgreSQL; each backend's
    failure is recorded on its own. Starts and stops its own PostgreSQL server."""
    from bench.db_bench import _guarded
    from bench.pg import servers_for

    redis_url = with_db(redis_url, REDIS_DB)
    for server in servers_for("mapping", with_pg, results, meta):
        label = _label("sqlite" if server is None else "postgresql")
        try:
            if server is None:
                main = sqlite_dataset("main", rows, redis_url, tmp)
                export = sqlite_dataset("export", rows, redis_url, tmp)
            else:
                main = pg_dataset(server, "main", rows, redis_url, tmp)
                export = pg_dataset(server, "export", rows, redis_url, tmp)
        except Exception as exc:
            results.errors[f"mapping data {label}"] = f"{type(exc).__name__}: {exc}"
            continue
        meta.setdefault(
            "dataset",
            f"{main.summary['transactions']:,} transactions over {DAYS} days (until "
            f"{NOW.date()}), {main.summary['accounts']:,} accounts, "
            f"{main.summary['users']:,} users, seed 7, planted fraud; the export exports "
            "the same number of rows owned by one user",
        )
        _guarded(
            results,
            f"mapping {label}",
            run_backend,
            results,
            main,
            export,
            server,
            redis_url,
            tmp,
            reps,
        )


__all__ = ["ROWS", "SECTION", "run_mapping"]
