"""Fixtures of the fault-injection suite: figures, a stalling SMTP server, a private PostgreSQL.

Every scenario records its figures (tasks sent, completed, duplicates, lost, what
was injected) with the `figures` fixture; they are printed and merged into
`var/reliability/figures.json` (or the file named by `BANKTASKS_RELIABILITY_FIGURES`),
which is where the table in docs/reliability.md comes from.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.testing import SMTPRecorder, _as_postgres, _pg_bindir, free_port

ROOT = Path(__file__).resolve().parents[2]
FIGURES = Path(
    os.environ.get("BANKTASKS_RELIABILITY_FIGURES", ROOT / "var" / "reliability" / "figures.json")
)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with its figures; printed and saved when the test passes."""
    record: dict[str, Any] = {}
    started = time.monotonic()
    yield record
    report = getattr(request.node, "rep_call", None)
    if not record or report is None or not report.passed:
        return
    record["seconds"] = round(time.monotonic() - started, 1)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    lock = FIGURES.with_suffix(".lock")
    with open(lock, "w") as fh:
        import fcntl

        fcntl.flock(fh, fcntl.LOCK_EX)
        data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        data[request.node.name] = record
        FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    print(f"\nFIGURES {request.node.name}: {json.dumps(record, sort_keys=True, default=str)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Keep each phase's report on the item, so `figures` knows whether the test passed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@dataclass
class StallingSMTP(SMTPRecorder):
    """The recording SMTP server, able to hold a client at `MAIL FROM` for as long as asked.

    While held, the server trickles `250-` continuation lines, so the client's
    socket timeout never fires: the client is kept *before* the message was sent
    (nothing accepted), for as long as the test needs to kill it.
    """

    stall_next: int = 0  # how many MAIL commands to hold
    mails: int = 0  # MAIL commands seen (one per delivery attempt that got that far)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self.mails += 1
        if self.stall_next > 0:
            self.stall_next -= 1
            self.holding.set()
            while not self.release.is_set():
                await server.push("250-still checking the sender")
                await asyncio.sleep(0.3)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def message_ids(self) -> list[str]:
        """The Message-ID of every message accepted, in order."""
        return [str(m["Message-ID"]) for m in self.messages]


@pytest.fixture
def stalling_smtp() -> Iterator[StallingSMTP]:
    """A started StallingSMTP, stopped at teardown."""
    server = StallingSMTP().start()
    yield server
    server.release.set()
    server.stop()


class PgCluster:
    """A PostgreSQL cluster of its own, which a test may stop and start at will."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="banktasks-relpg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _as_postgres([str(self.bindir / args[0]), *args[1:]]),
            check=check,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def init(self) -> PgCluster:
        """initdb and start."""
        self.data.mkdir()
        self.sockets.mkdir()
        if os.geteuid() == 0:
            for path in (self.base, self.data, self.sockets):
                shutil.chown(path, "postgres")
            os.chmod(self.base, 0o755)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        return self.start()

    def start(self) -> PgCluster:
        """Start the server and wait until it accepts connections."""
        opts = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.base / "pg.log"),
            "-w",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: disconnect clients, clean shutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        from sqlalchemy import create_engine, text

        name = f"rel_{uuid.uuid4().hex[:10]}"
        admin = create_engine(f"{self.url}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return f"{self.url}/{name}"

    def destroy(self) -> None:
        """Stop (immediately) and remove the cluster."""
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster (skipped without server binaries, unless required)."""
    bindir = _pg_bindir()
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        message = "no PostgreSQL server binaries (apt-get install postgresql)"
        if os.environ.get("BANKTASKS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cluster = PgCluster(bindir).init()
    yield cluster
    cluster.destroy()
