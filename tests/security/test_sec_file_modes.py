"""Finding 3: everything banktasks writes is owner-only (folders 0700, files 0600), whatever
the process umask, and what an older version left readable is tightened when banktasks
opens it.

The processes run with umask 022 (the usual default, which makes new files 0644 and new
folders 0755): this test process, the real worker it starts and the embedded Valkey server.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from banktasks_testing import wait_for
from core.db import make_engine, utcnow
from core.default_plugins.broker import EmbeddedValkey
from core.default_plugins.seed import seed
from core.files import write_bytes_atomic

PLUGINS = "fraud,reports,export,notifications"


def loose_modes(root: Path) -> list[str]:
    """Every path under `root` (and `root` itself) that is not exactly 0700 / 0600."""
    found = []
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [Path(dirpath, name) for name in dirnames + filenames]
    for path in paths:
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        wanted = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if stat.S_ISSOCK(info.st_mode) or stat.S_ISLNK(info.st_mode) or mode != wanted:
            found.append(f"{oct(mode)} {path.relative_to(root.parent)}")
    return sorted(found)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def embedded(e2e: Any, umask_022: None) -> Iterator[Any]:
    """The e2e environment on the embedded Valkey (REDIS_URL unset), stopped at teardown."""
    e2e.set(REDIS_URL="", BANKTASKS_PLUGINS=PLUGINS, EMAIL_BACKEND="file")
    var = Path(e2e.env["BANKTASKS_VAR_DIR"])
    yield e2e
    for worker in e2e.workers:  # before the broker goes away under them
        worker.stop()
    EmbeddedValkey(var).stop()


def test_sqlite_files_and_written_files_are_owner_only(tmp_path: Path, umask_022: None) -> None:
    """Without any broker or worker: the SQLite file, its -wal/-shm and the folders made for
    it; a file written with core.files and the folders made for it."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)  # a folder someone else made: left as it is
    engine = make_engine(f"sqlite:///{shared / 'var' / 'db' / 'bank.db'}")
    with engine.begin() as conn:  # WAL: -wal and -shm exist while the connection is open
        conn.exec_driver_sql("CREATE TABLE t (x)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert (shared / "var" / "db" / "bank.db-wal").exists()
        write_bytes_atomic(shared / "var" / "out" / "deep", "report.csv", b"a,b\n")
        assert loose_modes(shared / "var") == [], "\n".join(loose_modes(shared / "var"))
    engine.dispose()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


@pytest.mark.e2e
def test_everything_written_is_owner_only_under_umask_022(embedded: Any) -> None:
    app = embedded.app()
    var = app.runtime.settings.var_dir
    seed(app.runtime.db, users=5, transactions=300, days=30)
    embedded.start_worker(concurrency=2)
    today = utcnow().date()

    assert app.tasks["fraud.analyze_fraud_patterns"].delay().get(timeout=60)["alerts_created"]
    report = app.tasks["reports.generate_daily_reports"].delay(report_date=today).get(timeout=60)
    assert report["files"]
    export = app.tasks["export.export_transaction_data"].delay(
        user_id=1, start_date=today - timedelta(days=30), end_date=today
    )
    assert export.get(timeout=60)["rows"] > 0
    sent = app.tasks["notifications.send_admin_email"].delay(subject="Hi", message="there")
    assert sent.get(timeout=60)["status"] == "sent"
    wait_for(lambda: len(list((var / "outbox").glob("*.eml"))) >= 3, 60, "the hooks' e-mails")

    client = app.redis_client()
    client.bgrewriteaof()  # the AOF's rewrite files too
    wait_for(lambda: not client.info("persistence")["aof_rewrite_in_progress"], 30, "rewrite")

    names = {p.name for p in var.rglob("*")}
    for expected in ("banking.db", "banking.db-wal", "banking.db-shm", "valkey.log"):
        assert expected in names, f"{expected} was not written: nothing to check"
    assert any(n.startswith("appendonly") for n in names)
    assert loose_modes(var) == [], "\n".join(loose_modes(var))


@pytest.mark.e2e
def test_an_older_var_dir_with_loose_modes_is_tightened(embedded: Any) -> None:
    var = Path(embedded.env["BANKTASKS_VAR_DIR"])
    # What an older version left: a readable var dir, database, broker folder and files.
    (var / "valkey" / "appendonlydir").mkdir(parents=True)
    (var / "reports").mkdir(mode=0o700)
    legacy = sqlite3.connect(var / "banking.db")  # still open: its -wal and -shm exist
    legacy.execute("PRAGMA journal_mode=WAL")
    legacy.execute("CREATE TABLE legacy (x)")
    legacy.commit()
    for name in ("valkey.log", "valkey.pid", ".lock", "appendonlydir/appendonly.aof.1.incr.aof"):
        (var / "valkey" / name).write_text("")
    (var / "reports" / "daily-report-2024-01-01.json").write_text("{}")
    os.chmod(var / "reports" / "daily-report-2024-01-01.json", 0o600)
    for path in [var, *var.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755 if path.name != "reports" else 0o700)
        elif path.suffix != ".json":
            path.chmod(0o644)
    assert len(loose_modes(var)) == 10

    app = embedded.app()
    app.redis_client().ping()  # starts the embedded broker
    app.runtime.db.create_all()  # opens the database
    assert loose_modes(var) == [], "\n".join(loose_modes(var))
    legacy.close()
