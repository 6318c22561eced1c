"""The fraud rules one by one: each of the eight rules alone and all together over the
whole data window of 1M transactions, against a plain `SELECT count(*), sum(amount_minor)`
over the same rows (target: all rules ≤ 30× that scan), and the back-test's speed at
~100k, ~300k and 1M rows, on SQLite and PostgreSQL (section `rules`).

The rules run through the real read path (`plugins.fraud.engine`: `active_rules`, one
`RuleContext` per rule over `runtime.data_session`, as `analyse` does), with the five
typologies switched on by FRAUD_ENABLE_RULES; nothing is written. "All together" is the
engine's whole read phase (`engine._find`: the window's row count and every rule, one
session). The set of (rule, dedup_key) the rules find is compared with a reference kept
in bench/.data/ (made by the first run on that data set, at the commit it names), so a
change that makes a rule faster is also shown to find the same alerts.

The back-test is `plugins.fraud.backtest.run_backtest(None, since, until, compare=True)`
(every active rule, compared with the stored alerts: there are none in the bench data)
over windows of 3, 9 and 31 days ending with the data (~100k, ~300k and 1M rows of the
same data set, so the same accounts and the same traffic per day).
"""

# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.celery_bench import with_db
from bench.data import NOW, Dataset, data_key, pg_dataset, sqlite_dataset
from bench.util import DATA, ROOT, Results, Sample, fmt_num, fmt_ratio, fmt_sample, log, ratio

SECTION = (
    "Fraud rules on 1M transactions: each rule alone, all together, ÷ a count/sum scan; "
    "back-test scaling (SQLite | PostgreSQL)"
)
ROWS = 1_000_000
WINDOW_DAYS = 31  # the whole data set (30 days of seed data end at NOW)
BACKTEST_DAYS = (3, 9, WINDOW_DAYS)  # ~100k, ~300k, 1M rows
TARGET = 30.0
REDIS_DB = 14
TYPOLOGIES = (
    "cash_threshold",
    "amount_deviation",
    "fan_in_out",
    "pass_through",
    "dormant_reactivation",
)
RULES = ("large_transaction", "velocity", "structuring", *TYPOLOGIES)


def _label(backend: str) -> str:
    return "SQLite" if backend == "sqlite" else "PostgreSQL"


def _col(backend: str) -> str:
    return "value" if backend == "sqlite" else "postgresql"


SENSITIVE = {
    "velocity_limit": 4,
    "structuring_band_low": "0.5",
    "ctr_amount": "3000",
    "deviation_factor": "2",
    "deviation_min_amount": "200",
    "deviation_min_history": 5,
    "fan_min_counterparties": 3,
    "fan_window_hours": 48,
    "overlap_hours": 48,
    "pass_through_percent": 50,
    "pass_through_min_amount": "200",
    "dormant_days": 6,
    "dormant_activity_days": 2,
    "dormant_amount": "100",
}
"""Settings that make every rule fire often on the background traffic, for the alerts
check only (untimed): with the defaults, fan_in_out and dormant_reactivation find
nothing in the bench data, which would make "the same alerts" say little."""


def make_rules_app(url: str, redis_url: str, var: Path, fraud: dict[str, Any] | None = None) -> Any:
    """An app with the fraud plugin only and every typology switched on (`fraud`: more
    fraud settings)."""
    from core import create_app, load_settings

    var.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        database_url=url,
        redis_url=redis_url,
        banktasks_var_dir=str(var),
        banktasks_config=str(var / "none.toml"),
        log_level="WARNING",
    )
    tables = dict(settings._plugin_tables)
    tables["fraud"] = {
        **tables.get("fraud", {}),
        **(fraud or {}),
        "enable_rules": ",".join(TYPOLOGIES),
    }
    settings._plugin_tables = tables
    app = create_app(settings, plugins=["fraud"])
    app.runtime.db.create_all()
    return app


def count_sum(app: Any, since_us: int, until_us: int) -> tuple[int, int]:
    """The baseline: `SELECT count(*), sum(amount_minor)` over the window's rows."""
    from sqlalchemy import BigInteger, func, select, type_coerce

    t = app.runtime.data.transactions
    at = type_coerce(t.c.created_at, BigInteger)
    query = select(func.count(), func.sum(t.c.amount_minor)).where(at >= since_us, at < until_us)
    with app.runtime.data_session() as session:
        count, total = session.execute(query).one()
    return int(count), int(total or 0)


def run_rules(app: Any, names: list[str] | None, days: int) -> tuple[float, dict[str, set[str]]]:
    """Seconds of the engine's read phase over the last `days` days with the rules `names`
    (None: every active rule, the whole read phase), and per rule its dedup keys."""
    from core.db import utcnow
    from plugins.fraud import engine

    app.set_current()
    runtime = app.runtime
    settings = runtime.settings_for("fraud")
    rules = engine.active_rules(runtime, settings)
    if names is not None:
        rules = [r for r in rules if r.rule.name in names]
        if len(rules) != len(names):
            raise RuntimeError(f"rules {names} not all active: {[r.rule.name for r in rules]}")
    since = NOW - timedelta(days=days)
    with runtime.db.session() as session:
        started = time.perf_counter()
        if names is None:  # the whole read phase: the window's row count, then every rule
            found = engine._find(session, settings, rules, since, NOW, utcnow())
        else:  # the rules alone, as the read phase runs each
            window = engine.resolve_window(session, settings, since, NOW, utcnow())
            found = engine._Found(window, 0, 0, {})
            with runtime.data_session(session) as data:
                for active in rules:
                    engine._run_rule(found, active, data, settings, utcnow(), runtime.data)
        seconds = time.perf_counter() - started
        session.rollback()
    return seconds, {rule: {row["dedup_key"] for row in rows} for rule, rows in found.rows.items()}


def run_backtest_once(app: Any, days: int) -> tuple[float, str]:
    """Seconds of one back-test of every active rule over the last `days` days, and what
    ran."""
    from plugins.fraud.backtest import run_backtest

    app.set_current()
    since = NOW - timedelta(days=days)
    started = time.perf_counter()
    report = run_backtest(None, since, NOW, compare=True)
    seconds = time.perf_counter() - started
    report.as_dict()
    return seconds, "run_backtest(None, since, until, compare=True)"


# --------------------------------------------------------------------------- the alerts check


def _reference_path(backend: str, variant: str = "default") -> Path:
    suffix = "" if variant == "default" else f"-{variant}"
    return DATA / f"rules-keys-{backend}-{ROWS}-{data_key()}{suffix}.json"


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=str(ROOT)
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "plugins/fraud"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    ).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


def _digest(keys: dict[str, set[str]]) -> str:
    pairs = sorted((rule, key) for rule, ks in keys.items() for key in ks)
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def sensitive_keys(url: str, redis_url: str, var: Path) -> dict[str, set[str]]:
    """Per rule, the dedup keys found over the whole window with the SENSITIVE settings."""
    app = make_rules_app(url, redis_url, var, SENSITIVE)
    try:
        return {name: run_rules(app, [name], WINDOW_DAYS)[1].get(name, set()) for name in RULES}
    finally:
        app.runtime.db.dispose()


def check_reference(
    backend: str, keys: dict[str, set[str]], variant: str = "default"
) -> tuple[bool, str]:
    """Compare the (rule, dedup_key) set with the kept reference (written when missing)."""
    path = _reference_path(backend, variant)
    if not path.exists():
        path.write_text(
            json.dumps(
                {"commit": _commit(), "keys": {r: sorted(k) for r, k in keys.items()}},
                sort_keys=True,
            )
        )
        return True, f"reference written now (commit {_commit()})"
    ref = json.loads(path.read_text())
    problems = []
    for rule in sorted(set(ref["keys"]) | set(keys)):
        want, got = set(ref["keys"].get(rule, ())), keys.get(rule, set())
        if want != got:
            problems.append(
                f"{rule}: {len(got - want)} new (e.g. {sorted(got - want)[:2]}), "
                f"{len(want - got)} gone (e.g. {sorted(want - got)[:2]})"
            )
    if problems:
        return False, f"DIFFER from commit {ref['commit']}: " + "; ".join(problems)
    return True, f"same as the reference of commit {ref['commit']}"


# --------------------------------------------------------------------------- one backend


def _visible(results: Results, url: str) -> None:
    """VACUUM the data set's transactions when its visibility map is mostly unset, as
    autovacuum would have by then (the data sets are VACUUMed when built, but a snapshot
    held elsewhere in the cluster can keep that VACUUM from marking pages all-visible;
    then every index-only read visits the table too)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            pages, visible = conn.execute(
                text("SELECT relpages, relallvisible FROM pg_class WHERE relname = 'transactions'")
            ).one()
            if pages and visible < 0.9 * pages:
                conn.execute(text("VACUUM (ANALYZE) transactions"))
                results.note(
                    f"rules: PostgreSQL transactions had {visible:,} of {pages:,} pages "
                    "all-visible; VACUUMed before timing"
                )
    finally:
        engine.dispose()


def run_backend(results: Results, ds: Dataset, redis_url: str, tmp: Path, reps: int) -> None:
    """Time the baseline, each rule, all rules and the back-test on one data set."""
    from core.db import to_micros

    backend = ds.backend
    col = _col(backend)
    if backend == "postgresql":
        _visible(results, ds.url)
    app = make_rules_app(ds.url, redis_url, tmp / f"var-rules-{backend}")
    since_us, until_us = to_micros(NOW - timedelta(days=WINDOW_DAYS)), to_micros(NOW)
    rows, _total = count_sum(app, since_us, until_us)  # warm-up (page cache), untimed
    base: list[float] = []
    per_rule: dict[str, list[float]] = {name: [] for name in RULES}
    together: list[float] = []
    keys: dict[str, set[str]] = {}
    for rep in range(reps):
        started = time.perf_counter()
        count_sum(app, since_us, until_us)
        base.append(time.perf_counter() - started)
        order = RULES if rep % 2 == 0 else tuple(reversed(RULES))
        for name in order:
            seconds, found = run_rules(app, [name], WINDOW_DAYS)
            per_rule[name].append(seconds)
            keys.setdefault(name, found.get(name, set()))
        seconds, all_found = run_rules(app, None, WINDOW_DAYS)
        together.append(seconds)
        if {r: all_found.get(r, set()) for r in RULES} != {r: keys[r] for r in RULES}:
            raise RuntimeError("all rules together found other alerts than each rule alone")
        log(
            f"rules {backend} rep {rep + 1}: count/sum {base[-1]:.3f}s, all {together[-1]:.2f}s, "
            + ", ".join(f"{n} {per_rule[n][-1]:.2f}s" for n in RULES)
        )
    backtest: dict[int, list[float]] = {days: [] for days in BACKTEST_DAYS}
    scanned = {
        days: count_sum(app, to_micros(NOW - timedelta(days=days)), until_us)[0]
        for days in BACKTEST_DAYS
    }
    what = ""
    for rep in range(reps):
        order = BACKTEST_DAYS if rep % 2 == 0 else tuple(reversed(BACKTEST_DAYS))
        for days in order:
            seconds, what = run_backtest_once(app, days)
            backtest[days].append(seconds)
        log(
            f"rules {backend} back-test rep {rep + 1}: "
            + ", ".join(f"{scanned[d]:,} rows {backtest[d][-1]:.2f}s" for d in BACKTEST_DAYS)
        )
    app.runtime.db.dispose()
    same, detail = check_reference(backend, keys)
    wide = sensitive_keys(ds.url, redis_url, tmp / f"var-rules-wide-{backend}")
    same_wide, detail_wide = check_reference(backend, wide, "sensitive")
    counts = ", ".join(f"{n} {len(wide[n]):,}" for n in RULES)
    log(f"rules {backend}: alerts {detail}; with SENSITIVE settings ({counts}): {detail_wide}")
    same = same and same_wide
    detail = f"default settings: {detail}; SENSITIVE settings ({counts}): {detail_wide}"
    _record(results, backend, col, rows, base, per_rule, together, keys, same, detail)
    _record_backtest(results, backend, col, scanned, backtest, what)


def _record(
    results: Results,
    backend: str,
    col: str,
    rows: int,
    base: list[float],
    per_rule: dict[str, list[float]],
    together: list[float],
    keys: dict[str, set[str]],
    same: bool,
    detail: str,
) -> None:
    def add(key: str, figure: str, text: str, target: str = "", met: bool | None = None) -> None:
        results.row(key, figure, col, text, target, met, section=SECTION)

    s_base = results.sample(f"rules.{backend}.count_sum", Sample(base, "s"), rows=rows)
    add(
        "rules.base",
        f"SELECT count(*), sum(amount_minor) over the {WINDOW_DAYS}-day window "
        f"({rows:,} transactions)",
        fmt_sample(s_base),
    )
    for name in RULES:
        s = results.sample(
            f"rules.{backend}.{name}", Sample(per_rule[name], "s"), hits=len(keys[name])
        )
        r = ratio(s, s_base)
        results.compare(f"rules.{backend}.{name}.vs_count_sum", r, "", None)
        add(
            f"rules.{name}",
            f"  {name} alone: seconds (hits; ÷ count/sum)",
            f"{fmt_sample(s)} ({len(keys[name]):,}; {fmt_num(r['ratio'])}×)",
        )
    hits = sum(len(k) for k in keys.values())
    s_all = results.sample(f"rules.{backend}.all", Sample(together, "s"), hits=hits)
    add(
        "rules.all",
        "all 8 rules together (the engine's read phase, one session)",
        f"{fmt_sample(s_all)} ({hits:,} hits)",
    )
    r = ratio(s_all, s_base)
    met = r["ratio"] <= TARGET
    results.compare(f"rules.{backend}.all_vs_count_sum", r, f"≤ {TARGET:.0f}×", met)
    add("rules.ratio", "  all rules ÷ count/sum", fmt_ratio(r), f"≤ {TARGET:.0f}×", met)
    results.compare(
        f"rules.{backend}.alerts",
        {"hits": {n: len(k) for n, k in keys.items()}, "sha256": _digest(keys), "detail": detail},
        "same (rule, dedup_key) as the reference",
        same,
    )
    add(
        "rules.same",
        "(rule, dedup_key) found, against the kept reference run",
        f"{detail}; sha256 {_digest(keys)[:12]}",
        "same",
        same,
    )


def _record_backtest(
    results: Results,
    backend: str,
    col: str,
    scanned: dict[int, int],
    backtest: dict[int, list[float]],
    what: str,
) -> None:
    cells = []
    per_100k = {}
    for days in BACKTEST_DAYS:
        s = results.sample(
            f"rules.{backend}.backtest.{days}d", Sample(backtest[days], "s"), rows=scanned[days]
        )
        per_100k[days] = s.median / scanned[days] * 100_000
        cells.append(f"{fmt_sample(s)} ({fmt_num(per_100k[days])} s/100k)")
    growth = per_100k[BACKTEST_DAYS[-1]] / per_100k[BACKTEST_DAYS[0]]
    results.compare(
        f"rules.{backend}.backtest_scaling",
        {"per_100k_s": {str(d): v for d, v in per_100k.items()}, "growth": growth, "what": what},
        "",
        None,
    )
    rows = "; ".join(f"{scanned[d] / 1000:,.0f}k" for d in BACKTEST_DAYS)
    results.row(
        "rules.backtest",
        f"back-test of all 8 rules, {rows} rows: seconds (per 100k rows); {what}",
        col,
        "; ".join(cells),
        section=SECTION,
    )
    results.row(
        "rules.backtest.growth",
        "  seconds per 100k rows at 1M ÷ at 100k",
        col,
        f"{fmt_num(growth)}",
        section=SECTION,
    )


# --------------------------------------------------------------------------- driver


def run_rules_section(
    results: Results,
    redis_url: str,
    tmp: Path,
    reps: int,
    with_pg: bool,
    meta: dict[str, Any],
    rows: int = ROWS,
) -> None:
    """The `rules` section on SQLite and (unless --no-postgres) PostgreSQL, each backend's
    failure recorded on its own. Starts and stops its own PostgreSQL server."""
    from bench.db_bench import _guarded
    from bench.pg import servers_for

    redis_url = with_db(redis_url, REDIS_DB)
    for server in servers_for("rules", with_pg, results, meta):
        label = _label("sqlite" if server is None else "postgresql")
        try:
            if server is None:
                ds = sqlite_dataset("main", rows, redis_url, tmp)
            else:
                ds = pg_dataset(server, "main", rows, redis_url, tmp)
        except Exception as exc:
            results.errors[f"rules data {label}"] = f"{type(exc).__name__}: {exc}"
            continue
        meta.setdefault(
            "dataset",
            f"{ds.summary['transactions']:,} transactions over 30 days (until {NOW.date()}), "
            f"{ds.summary['accounts']:,} accounts, {ds.summary['users']:,} users, seed 7, "
            "planted fraud",
        )
        _guarded(results, f"rules {label}", run_backend, results, ds, redis_url, tmp, reps)


__all__ = ["RULES", "SECTION", "run_rules_section"]
