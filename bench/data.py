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

For the `mapping` section each data set also has a copy in a bank's own schema
(`banktasks_testing.bankschema`: `auth_user`, `banking_account`, `banking_transaction`,
filled by `copy_from_native`) with the indexes `core.sources.recommended_indexes` prints:
bench/.data/sqlite-bank-<kind>-<rows>-<bankkey>.db and bench_bank_<kind>_<rows>_<bankkey>,
where <bankkey> also covers banktasks_testing/bankschema.py and core/sources.py. The
copy's time is measured once, when it is built, and kept with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
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


# --------------------------------------------------------------------------- bank copies


@dataclass
class BankCopy:
    """A data set copied into the bank schema of `banktasks_testing.bankschema`."""

    kind: str
    rows: int
    url: str
    backend: str  # "sqlite" | "postgresql"
    build: dict[str, Any]  # rows per table, copy and index seconds, indexes, when built
    path: Path | None = None  # SQLite file
    database: str | None = None  # PostgreSQL database name


def bank_key() -> str:
    """The data key, plus the bank schema and the mapping's SQL (the recommended indexes)."""
    digest = hashlib.sha1(data_key().encode())
    for name in ("banktasks_testing/bankschema.py", "core/sources.py"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()[:10]


def bank_indexes(dialect: str) -> list[str]:
    """`banktasks db indexes` for BANK_MAPPING (the bank's tables in the default schema)."""
    from banktasks_testing.bankschema import BANK_MAPPING
    from core.mapping import DataMapping
    from core.sources import recommended_indexes

    return recommended_indexes(DataMapping.model_validate(BANK_MAPPING), dialect)


def _fill_bank(native: Dataset, bank_url: str, dialect: str) -> dict[str, Any]:
    """create_bank_schema + copy_from_native + the recommended indexes; what it took."""
    from sqlalchemy import create_engine, text

    from banktasks_testing.bankschema import copy_from_native, create_bank_schema

    source, bank = create_engine(native.url), create_engine(bank_url)
    try:
        create_bank_schema(bank)
        started = time.perf_counter()
        counts = copy_from_native(source, bank)
        copy_s = time.perf_counter() - started
        statements = bank_indexes(dialect)
        started = time.perf_counter()
        with bank.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
        index_s = time.perf_counter() - started
    finally:
        source.dispose()
        bank.dispose()
    return {
        "counts": counts,
        "copy_s": copy_s,
        "rows_per_s": sum(counts.values()) / copy_s,
        "index_s": index_s,
        "indexes": statements,
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def sqlite_bank_copy(native: Dataset) -> BankCopy:
    """The SQLite data set `native` in the bank schema, in a file of its own (cached)."""
    key = bank_key()
    path = DATA / f"sqlite-bank-{native.kind}-{native.rows}-{key}.db"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        build = json.loads(meta.read_text())
        return BankCopy(native.kind, native.rows, f"sqlite:///{path}", "sqlite", build, path)
    for old in DATA.glob(f"sqlite-bank-{native.kind}-{native.rows}-*"):
        old.unlink()
    partial = path.with_name(path.stem + ".partial.db")
    for leftover in DATA.glob(partial.name + "*"):
        leftover.unlink()
    log(f"copying SQLite {native.kind} into the bank schema (cached for later runs)")
    build = _fill_bank(native, f"sqlite:///{partial}", "sqlite")
    for suffix in ("-wal", "-shm", "-journal"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    os.replace(partial, path)
    meta.write_text(json.dumps(build))
    return BankCopy(native.kind, native.rows, f"sqlite:///{path}", "sqlite", build, path)


def pg_bank_copy(server: Any, native: Dataset) -> BankCopy:
    """The PostgreSQL data set `native` in the bank schema (`public`), in a database of
    its own in the cached cluster, `VACUUM ANALYZE`d like the data sets (cached)."""
    from sqlalchemy import create_engine, text

    name = f"bench_bank_{native.kind}_{native.rows}_{bank_key()}"
    prefix = f"bench_bank_{native.kind}_{native.rows}_"
    admin = create_engine(f"{server.url}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            existing = {r[0] for r in conn.execute(text("SELECT datname FROM pg_database"))}
            for old in existing:
                if old.startswith(prefix) and old != name:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)'))
        url = f"{server.url}/{name}"
        if name in existing:
            engine = create_engine(url)
            with engine.connect() as conn:
                build = json.loads(conn.execute(text("SELECT build FROM bench_bank")).scalar_one())
            engine.dispose()
            return BankCopy(native.kind, native.rows, url, "postgresql", build, database=name)
        partial = name + "_partial"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{partial}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{partial}"'))
        log(f"copying PostgreSQL {native.kind} into the bank schema (cached for later runs)")
        build = _fill_bank(native, f"{server.url}/{partial}", "postgresql")
        engine = create_engine(f"{server.url}/{partial}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_bank (build text NOT NULL)"))
            conn.execute(text("INSERT INTO bench_bank VALUES (:b)"), {"b": json.dumps(build)})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{partial}" RENAME TO "{name}"'))
        return BankCopy(native.kind, native.rows, url, "postgresql", build, database=name)
    finally:
        admin.dispose()
