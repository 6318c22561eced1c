"""A PostgreSQL server for the benchmarks, from Debian's packages (as the testing kit starts one).

The cluster lives in bench/.data/pg/ (or /var/tmp/banktasks-bench-pg when user
postgres cannot enter the clone's directory) and is kept between runs (seeding a million
rows is the slow part); the server is started for the run and stopped after it.
Settings as in the test fixture (fsync=off, synchronous_commit=off,
full_page_writes=off: durability is not what is measured); everything else is
PostgreSQL's default (shared_buffers 128MB, work_mem 4MB).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from banktasks_testing import PgCluster, pg_bindir
from bench.util import DATA, log


class PgUnavailable(RuntimeError):
    """No PostgreSQL server could be started (the reason is the message)."""


def _cluster_dir() -> Path:
    """bench/.data/pg, or /var/tmp/banktasks-bench-pg when user postgres cannot reach the clone."""
    DATA.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return DATA / "pg"
    reachable = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(DATA)], capture_output=True
    )
    return DATA / "pg" if reachable.returncode == 0 else Path("/var/tmp/banktasks-bench-pg")


class PgServer:
    """The kept benchmark cluster (`banktasks_testing.PgCluster`, `base=`), started for a run."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or _cluster_dir()
        self.bin = pg_bindir()
        self.cluster: PgCluster | None = None

    @property
    def url(self) -> str:
        assert self.cluster is not None, "start() first"
        return self.cluster.url

    def libpq_url(self, database: str) -> str:
        assert self.cluster is not None, "start() first"
        return f"postgresql://postgres@127.0.0.1:{self.cluster.port}/{database}"

    def version(self) -> str:
        assert self.bin is not None
        out = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True
        )
        found = re.search(r"\)\s+(\d+(?:\.\d+)*)", out.stdout)
        return found.group(1) if found else out.stdout.strip() or "unknown"

    def start(self) -> str:
        if self.bin is None:
            raise PgUnavailable("no PostgreSQL server binaries (apt-get install -y postgresql)")
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            raise PgUnavailable("running as root without runuser")
        if not (self.base / "data" / "PG_VERSION").exists():
            log("initdb of the benchmark PostgreSQL cluster (once)")
        cluster = PgCluster(self.bin, base=self.base)
        try:
            self.cluster = cluster.init()
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip()[-300:]
            tool = next((Path(c).name for c in exc.cmd if c.startswith(str(self.bin))), "pg")
            raise PgUnavailable(f"{tool} failed: {detail}") from None
        return self.url

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop("fast")
            self.cluster = None

    def psql(self) -> str | None:
        if self.bin is not None and (self.bin / "psql").exists():
            return str(self.bin / "psql")
        return shutil.which("psql")


def servers_for(section: str, with_pg: bool, results: Any, meta: dict[str, Any]) -> Iterator[Any]:
    """The databases a section runs on, one after the other: None (SQLite), then a started
    PgServer, stopped when the section moves on. Without `with_pg` (`--no-postgres`), or
    when no server starts, the PostgreSQL turn is skipped and noted in `results`."""
    yield None
    if not with_pg:
        results.note(f"{section}: PostgreSQL skipped (--no-postgres)")
        return
    server = PgServer()
    try:
        server.start()
    except (PgUnavailable, OSError, subprocess.SubprocessError) as exc:
        results.note(f"{section}, PostgreSQL column: unavailable: {exc}")
        return
    meta.setdefault("postgresql", server.version())
    try:
        yield server
    finally:
        server.stop()
