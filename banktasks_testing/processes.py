"""Real processes and servers for tests: a Celery worker, an SMTP server, a PostgreSQL cluster.

None of these is a mock: each runs the real thing on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class WorkerProcess:
    """A real `celery -A core worker` process with its own log file."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        queues: list[str] | None = None,
        concurrency: int = 1,
        pool: str = "prefork",
        name: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.env = env
        self.log_path = log
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "core",
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-l",
            "INFO",
            "-n",
            f"{self.name}@%h",
            "--without-mingle",
            "--without-gossip",
            *(extra or []),
        ]
        if queues:
            self.cmd += ["-Q", ",".join(queues)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 40.0) -> WorkerProcess:
        """Start the worker and wait until it says it is ready."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: self.ready() or self._died(), timeout, f"worker {self.name}", 0.1)
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def ready(self) -> bool:
        """True once the worker logged that it is ready."""
        return " ready." in self.log()

    def log(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def children(self) -> list[int]:
        """PIDs of the pool's child processes."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL of the whole process group if needed."""
        if self.proc is None:
            return
        stop_group(self.proc, timeout)
        self._log.close()
        self.proc = None


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a process started with `start_new_session=True`: SIGTERM, wait up to `timeout`,
    then SIGKILL; whatever is left of its process group is killed too."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class SMTPRecorder:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""

    port: int = field(default_factory=free_port)
    messages: list[Message] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    reply: str | None = None  # e.g. "451 try later" or "550 no such user"
    attempts: int = 0

    def __post_init__(self) -> None:
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.reply:
            return self.reply
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"

    def start(self) -> SMTPRecorder:
        """Start listening on `port` (the same port after a stop)."""
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def pg_bindir() -> Path | None:
    """Where PostgreSQL's server binaries are (Debian's /usr/lib/postgresql/N/bin), if any."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    return None


def as_postgres(cmd: list[str]) -> list[str]:
    """`cmd` run as user postgres when we are root (the server refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PgCluster:
    """A PostgreSQL cluster of its own (Debian's server binaries), which a test may stop and
    start at will. By default under a new temp dir outside pytest's (that one is private
    to root, and postgres must not be root); with `base`, a kept cluster that `init()`
    creates once and starts again on later runs (the benchmarks' seeded databases).
    Durability is off (fsync, synchronous_commit, full_page_writes): it is not tested."""

    def __init__(self, bindir: Path, base: Path | None = None) -> None:
        self.bindir = bindir
        self.base = base or Path(tempfile.mkdtemp(prefix="banktasks-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def _run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            as_postgres([str(self.bindir / args[0]), *args[1:]]),
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def init(self) -> PgCluster:
        """initdb (unless the cluster exists already) and start."""
        self.base.mkdir(parents=True, exist_ok=True)
        if self.data.exists() and not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data)  # an initdb that did not finish
        fresh = not self.data.exists()
        self.data.mkdir(exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.base, self.data, self.sockets):
                shutil.chown(path, "postgres")
            os.chmod(self.base, 0o755)
        if fresh:
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
                timeout=120,
            )
        elif (self.data / "postmaster.pid").exists():  # left running by an interrupted run
            self.stop()
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
            "-t",
            "60",
            "start",
            timeout=90,
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: disconnect clients, clean shutdown)."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False, timeout=120
        )

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
