"""A PostgreSQL server for the benchmarks, from Debian's packages (as core.testing starts one).

The cluster lives in bench/.data/pg/ (or /var/tmp/banktasks-bench-pg when user
postgres cannot enter the clone's directory) and is kept between runs (seeding a million
rows is the slow part); the server is started for the run and stopped after it.
Settings as in the test fixture (fsync=off, synchronous_commit=off,
full_page_writes=off: durability is not what is measured); everything else is
PostgreSQL's default (shared_buffers 128MB, work_mem 4MB).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from bench.util import DATA, free_port, log


class PgUnavailable(RuntimeError):
    """No PostgreSQL server could be started (the reason is the message)."""


def bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


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
    """initdb once under bench/.data/pg, then pg_ctl start/stop around a run."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or _cluster_dir()
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.bin = bindir()
        self.port = 0
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def libpq_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def version(self) -> str:
        assert self.bin is not None
        out = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True
        )
        found = re.search(r"\)\s+(\d+(?:\.\d+)*)", out.stdout)
        return found.group(1) if found else out.stdout.strip() or "unknown"

    def _run(self, cmd: list[str], what: str, timeout: float = 120) -> None:
        out = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise PgUnavailable(f"{what} failed: {(out.stderr or out.stdout).strip()[-300:]}")

    def start(self) -> str:
        if self.bin is None:
            raise PgUnavailable("no PostgreSQL server binaries (apt-get install -y postgresql)")
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            raise PgUnavailable("running as root without runuser")
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sockets, "postgres")
            os.chmod(self.base, 0o755)
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            log("initdb of the benchmark PostgreSQL cluster (once)")
            self._run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
                "initdb",
            )
        if (self.data / "postmaster.pid").exists():  # left over by an interrupted run of ours
            subprocess.run(
                _as_postgres(
                    [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"]
                ),
                capture_output=True,
                timeout=60,
            )
        self.port = free_port()
        opts = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(self.base / "pg.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            "pg_ctl start",
        )
        self.started = True
        return self.url

    def stop(self) -> None:
        if self.started and self.bin is not None:
            subprocess.run(
                _as_postgres(
                    [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"]
                ),
                capture_output=True,
                timeout=120,
            )
            self.started = False

    def psql(self) -> str | None:
        if self.bin is not None and (self.bin / "psql").exists():
            return str(self.bin / "psql")
        return shutil.which("psql")
