"""The benchmark data sets, written by `core.default_plugins.seed.seed` and cached between runs.

- `main`: N transactions (1,000,000; 100,000 with --quick) over 30 days on
  10,001 accounts (8,305 users, seed 7, planted fraud patterns), for fraud and
  reports.
- `export`: the same number of transactions owned by ONE user (two accounts), so
  that `export_transaction_data(user_id=1, …)` exports all of them.

SQLite files are cached as bench/.data/sqlite-<kind>-<rows>-<key>.db, PostgreSQL
databases as bench_<kind>_<rows>_<key> in the cached cluster; <key> changes when
core/default_plugins/seed.py, core/models.py or core/db.py change, so stale data is never reused.
Both are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.util import DATA, ROOT, log

NOW = datetime(2025, 6, 1, tzinfo=UTC)  # `now` of the seed: the data ends here
DAYS = 30
SEED = 7
MAIN_USERS = 8305  # → 10,001 accounts with seed 7 (20% of users get two)


@dataclass
class Dataset:
    kind: str
    rows: int
    url: str
    summary: dict[str, Any]
    backend: str  # "sqlite" | "postgresql"
    path: Path | None = None  # SQLite file
    database: str | None = None  # PostgreSQL database name


def data_key() -> str:
    digest = hashlib.sha1()
    for name in ("core/default_plugins/seed.py", "core/models.py", "core/db.py"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()[:10]


def users_for(kind: str) -> int:
    return MAIN_USERS if kind == "main" else 1


def _create_all_tables(url: str, redis_url: str, var: Path) -> None:
    """Every enabled plugin's tables too (fraud alerts, reports, exports, notifications)."""
    from core import create_app, load_settings

    app = create_app(
        load_settings(
            database_url=url,
            redis_url=redis_url,
            banktasks_var_dir=str(var),
            banktasks_config=str(var / "none.toml"),
        )
    )
    app.runtime.db.create_all()
    app.runtime.db.dispose()


def sqlite_dataset(kind: str, rows: int, redis_url: str, tmp: Path) -> Dataset:
    from core.db import Database
    from core.default_plugins.seed import seed

    key = data_key()
    path = DATA / f"sqlite-{kind}-{rows}-{key}.db"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return Dataset(
            kind, rows, f"sqlite:///{path}", json.loads(meta.read_text()), "sqlite", path
        )
    for old in DATA.glob(f"sqlite-{kind}-{rows}-*"):
        old.unlink()
    partial = path.with_name(path.stem + ".partial.db")
    for leftover in DATA.glob(partial.name + "*"):
        leftover.unlink()
    log(f"seeding SQLite {kind}: {rows:,} transactions (cached for later runs)")
    db = Database(f"sqlite:///{partial}")
    _create_all_tables(db.url, redis_url, tmp / "var-seed")
    summary = seed(
        db, users=users_for(kind), transactions=rows, seed_value=SEED, days=DAYS, now=NOW
    )
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    for suffix in ("-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    os.replace(partial, path)
    meta.write_text(json.dumps(summary.as_dict()))
    return Dataset(kind, rows, f"sqlite:///{path}", summary.as_dict(), "sqlite", path)


def pg_dataset(server: Any, kind: str, rows: int, redis_url: str, tmp: Path) -> Dataset:
    from sqlalchemy import create_engine, text

    from core.db import Database
    from core.default_plugins.seed import seed

    key = data_key()
    name = f"bench_{kind}_{rows}_{key}"
    admin = create_engine(f"{server.url}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            existing = {r[0] for r in conn.execute(text("SELECT datname FROM pg_database"))}
            for old in existing:
                if old.startswith(f"bench_{kind}_{rows}_") and old != name:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)'))
        url = f"{server.url}/{name}"
        if name in existing:
            engine = create_engine(url)
            with engine.connect() as conn:
                summary = json.loads(
                    conn.execute(text("SELECT summary FROM bench_dataset")).scalar_one()
                )
            engine.dispose()
            return Dataset(kind, rows, url, summary, "postgresql", database=name)
        partial = name + "_partial"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{partial}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{partial}"'))
        log(f"seeding PostgreSQL {kind}: {rows:,} transactions (cached for later runs)")
        db = Database(f"{server.url}/{partial}")
        _create_all_tables(db.url, redis_url, tmp / "var-seed")
        result = seed(
            db, users=users_for(kind), transactions=rows, seed_value=SEED, days=DAYS, now=NOW
        )
        summary = result.as_dict()
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_dataset (summary text NOT NULL)"))
            conn.execute(text("INSERT INTO bench_dataset VALUES (:s)"), {"s": json.dumps(summary)})
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{partial}" RENAME TO "{name}"'))
        return Dataset(kind, rows, url, summary, "postgresql", database=name)
    finally:
        admin.dispose()
