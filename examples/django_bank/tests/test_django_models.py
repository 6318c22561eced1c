"""The Django bank example: `migrate` and `seed_bank` in subprocesses on temporary
SQLite files, the rows they write (read back with sqlite3, as stored), and the
verbatim seed block. Nothing here needs banktasks' mapping."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[1]
REPO = EXAMPLE.parents[1]
DAY = "2024-01-15"
SEED_ARGS = ("--users", "20", "--transactions", "400", "--seed", "7", "--day", DAY)
CENTS = "CAST(ROUND(amount * 100) AS INTEGER)"  # exact cents of a REAL/INTEGER amount


def manage(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python manage.py ARGS` on the SQLite file `db`."""
    env = {**os.environ, "DJANGO_DATABASE_URL": f"sqlite:///{db}"}
    proc = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def seed(db: Path) -> dict[str, Any]:
    """Migrate and seed `db`; the command's JSON summary."""
    manage(db, "migrate", "-v", "0")
    out = manage(db, "seed_bank", *SEED_ARGS)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[sqlite3.Connection, dict[str, Any]]]:
    db = tmp_path_factory.mktemp("django_bank") / "bank.db"
    summary = seed(db)
    conn = sqlite3.connect(db)
    yield conn, summary
    conn.close()


def rows(conn: sqlite3.Connection, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_summary_matches_the_tables(seeded: tuple[sqlite3.Connection, dict[str, Any]]) -> None:
    conn, summary = seeded
    assert summary["users"] == 20 and summary["transactions"] == 400
    assert rows(conn, "SELECT count(*) FROM auth_user") == [(20,)]
    assert rows(conn, "SELECT count(*) FROM banking_account") == [(summary["accounts"],)]
    assert rows(conn, "SELECT count(*) FROM banking_transaction") == [(400,)]
    assert rows(conn, "SELECT count(*) FROM core_branch") == [(3,)]
    assert rows(conn, "SELECT email, is_active FROM auth_user WHERE id = 1") == [
        ("user1@example.com", 1)
    ]
    per_user = rows(conn, "SELECT count(*) FROM banking_account GROUP BY owner_id")
    assert len(per_user) == 20 and {n for (n,) in per_user} <= {1, 2}


def test_every_transaction_on_the_day_with_every_type_and_status(
    seeded: tuple[sqlite3.Connection, dict[str, Any]],
) -> None:
    conn, _ = seeded
    ((low, high),) = rows(conn, "SELECT min(created_at), max(created_at) FROM banking_transaction")
    assert low >= f"{DAY} 00:00:00" and high < "2024-01-16"
    pairs = set(rows(conn, "SELECT DISTINCT transaction_type, status FROM banking_transaction"))
    assert len(pairs) == 5 * 4
    assert rows(conn, "SELECT count(*) FROM banking_transaction WHERE amount <= 0") == [(0,)]
    assert rows(
        conn, "SELECT count(*) FROM banking_transaction WHERE updated_at != created_at"
    ) == [(0,)]


def test_large_transactions_strictly_above_the_threshold(
    seeded: tuple[sqlite3.Connection, dict[str, Any]],
) -> None:
    conn, summary = seeded
    planted = summary["planted"]
    above = rows(conn, f"SELECT id FROM banking_transaction WHERE {CENTS} > 1000000 ORDER BY id")
    assert [i for (i,) in above] == sorted(planted["large"])
    exact = rows(conn, f"SELECT id, {CENTS} FROM banking_transaction WHERE {CENTS} = 1000000")
    assert exact == [(planted["exact_threshold"], 1000000)]
    # nothing else reaches the structuring band [9000.00, 10000.00)
    band = rows(conn, f"SELECT id FROM banking_transaction WHERE {CENTS} >= 900000")
    expected = {*planted["large"], planted["exact_threshold"]}
    expected |= set(planted["structuring"]["transaction_ids"])
    assert {i for (i,) in band} == expected


def test_velocity_and_nothing_else_over_ten_per_hour(
    seeded: tuple[sqlite3.Connection, dict[str, Any]],
) -> None:
    conn, summary = seeded
    velocity = summary["planted"]["velocity"]
    burst = rows(
        conn,
        "SELECT id, account_id, created_at FROM banking_transaction WHERE id IN "
        f"({','.join('?' * len(velocity['transaction_ids']))}) ORDER BY created_at",
        *velocity["transaction_ids"],
    )
    assert len(burst) == 12 and {a for _, a, _ in burst} == {velocity["account_id"]}
    assert at(burst[-1][2]) - at(burst[0][2]) < timedelta(minutes=30)

    times: dict[int, list[datetime]] = defaultdict(list)
    for account, created in rows(conn, "SELECT account_id, created_at FROM banking_transaction"):
        times[account].append(at(created))
    busy = set()
    for account, stamps in times.items():
        stamps.sort()
        for i, first in enumerate(stamps):
            inside = [t for t in stamps[i:] if t - first <= timedelta(minutes=60)]
            if len(inside) > 10:
                busy.add(account)
    assert busy == {velocity["account_id"]}


def test_structuring_deposits(seeded: tuple[sqlite3.Connection, dict[str, Any]]) -> None:
    conn, summary = seeded
    structuring = summary["planted"]["structuring"]
    deposits = rows(
        conn,
        f"SELECT id, account_id, transaction_type, {CENTS}, created_at FROM banking_transaction "
        "WHERE account_id = ? AND transaction_type = 'DEPOSIT' AND amount >= 9000 "
        "ORDER BY created_at",
        structuring["account_id"],
    )
    assert [d[0] for d in deposits] == structuring["transaction_ids"]
    assert {d[3] for d in deposits} == {950000}
    assert at(deposits[-1][4]) - at(deposits[0][4]) < timedelta(hours=2)


def test_stored_forms_on_sqlite(seeded: tuple[sqlite3.Connection, dict[str, Any]]) -> None:
    """What a mapping reads: REAL (or INTEGER when whole) amounts, naive UTC text times."""
    conn, summary = seeded
    kinds = dict(rows(conn, "SELECT typeof(amount), count(*) FROM banking_transaction GROUP BY 1"))
    assert set(kinds) == {"real", "integer"}
    exact = summary["planted"]["exact_threshold"]
    assert rows(conn, "SELECT typeof(amount), amount FROM banking_transaction WHERE id = ?", exact)[
        0
    ] == ("integer", 10000)
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?")
    for created, kind in rows(
        conn, "SELECT created_at, typeof(created_at) FROM banking_transaction"
    ):
        assert kind == "text" and stamp.fullmatch(created), created
    # the app label `core` (module bankcore) owns core_branch and its migration
    assert rows(conn, "SELECT name FROM django_migrations WHERE app = 'core'") == [
        ("0001_initial",)
    ]


def test_same_seed_same_rows(
    seeded: tuple[sqlite3.Connection, dict[str, Any]], tmp_path: Path
) -> None:
    conn, summary = seeded
    again = tmp_path / "again.db"
    assert seed(again) == summary
    other = sqlite3.connect(again)
    try:
        for table in ("auth_user", "banking_account", "banking_transaction"):
            sql = f"SELECT * FROM {table} ORDER BY id"
            assert rows(other, sql) == rows(conn, sql), table
    finally:
        other.close()


def test_refuses_a_database_with_data(tmp_path: Path) -> None:
    db = tmp_path / "twice.db"
    seed(db)
    proc = manage(db, "seed_bank", *SEED_ARGS, check=False)
    assert proc.returncode != 0
    assert "already holds data" in proc.stderr


def test_task_examples_are_the_seed_block_verbatim() -> None:
    doc = (REPO / "docs" / "seed-celery.md").read_text()
    section = doc.split("### Task Usage Examples", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    source = (EXAMPLE / "banking" / "task_examples.py").read_text()
    assert f"# fmt: off\n{block}# fmt: on\n" in source
    assert source.index("from core.tasks import export_transaction_data") < source.index(block)


def test_database_url() -> None:
    spec = importlib.util.spec_from_file_location(
        "database_url", EXAMPLE / "bankproject" / "database_url.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parse = module.database_from_url

    assert parse("sqlite:////tmp/djb/x.db") == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "/tmp/djb/x.db",
    }
    assert parse("sqlite:///var/rel.db")["NAME"] == "var/rel.db"
    pg = parse("postgresql+psycopg://bank:p%40ss%3Aword@db.internal:6543/bank?sslmode=require")
    assert pg == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "bank",
        "USER": "bank",
        "PASSWORD": "p@ss:word",
        "HOST": "db.internal",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require"},
    }
    assert parse("postgres://u@h/d")["PORT"] == ""
    for bad in ("mysql://u@h/d", "postgresql://u@h:5432/", "sqlite://relative.db"):
        with pytest.raises(ValueError):
            parse(bad)
