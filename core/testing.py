"""Pytest fixtures for banktasks and its plugins, with real parts.

Enable with `pytest_plugins = ["core.testing"]` in a conftest (the project's
root conftest does). Fixtures:

- `bt_env`: an isolated environment (temp var dir and SQLite file, no REDIS_URL,
  no plugin selection, cwd in a temp dir so no `.env`/`banktasks.toml` leaks in).
- `make_app(plugins=None, **settings)`: build an app and create its tables.
- `valkey_url` (session): a real embedded Valkey server, stopped at the end.
- `e2e`: env + broker + database for end-to-end tests; `e2e.start_worker()` runs a
  real `celery -A core worker` process, stopped (and reaped) at teardown.
- `smtp_server`: a real aiosmtpd SMTP server that records messages, can be
  stopped/started on the same port and told to answer 4xx/5xx.
- `postgres_url` (session) / `pg_database_url`: a real PostgreSQL server from
  Debian's packages and a fresh database per test (skipped with a reason when no
  server binaries exist, unless BANKTASKS_REQUIRE_POSTGRES=1 makes that a failure).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from core.broker import EmbeddedValkey
from core.markers import hookimpl

ENV_PREFIXES = (
    "BANKTASKS_",
    "REDIS_URL",
    "DATABASE_URL",
    "LOG_",
    "FLOWER_",
    "EMAIL_",
    "SMTP_",
    "ADMIN_EMAIL",
    "DEFAULT_FROM_EMAIL",
    "FRAUD_",
    "REPORTS_",
    "EXPORT_",
    "HEALTH_",
    "NOTIFICATIONS_",
)


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


def fake_plugin(name: str, **hooks: Callable[..., Any]) -> ModuleType:
    """A plugin module object named `name` whose hooks are the given functions.

    `fake_plugin("rec", on_fraud_alert=lambda alert: seen.append(alert))`
    """
    module = ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


@pytest.fixture
def bt_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An isolated banktasks environment; returns the variables it set."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES):
            monkeypatch.delenv(key, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    env = {
        "BANKTASKS_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'banking.db'}",
        "BANKTASKS_CONFIG": str(work / "banktasks.toml"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from core.app import reset_default_app

    reset_default_app()
    yield env
    reset_default_app()


@pytest.fixture
def make_app(
    bt_env: dict[str, str], valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Any]]:
    """Factory: `make_app(plugins=[obj], **settings_overrides)` → app with tables created.

    The app talks to the session's real Valkey (emptied first), so a `.delay()` made
    by code under test lands in a real queue that the test can inspect.
    """
    import redis

    redis.Redis.from_url(valkey_url).flushall()
    monkeypatch.setenv("REDIS_URL", valkey_url)
    created: list[Any] = []

    def factory(plugins: list[object] | None = None, **overrides: Any) -> Any:
        from core.app import create_app
        from core.settings import load_settings

        app = create_app(load_settings(**overrides), plugins=plugins)
        app.runtime.db.create_all()
        created.append(app)
        return app

    yield factory
    for app in created:
        app.runtime.db.dispose()


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Valkey server (the embedded one) for the whole test session."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"))
    url = server.ensure_running()
    yield url
    server.stop()


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
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        self.proc = None


@dataclass
class E2E:
    """An end-to-end environment: broker URL, database, env vars, workers."""

    tmp: Path
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    workers: list[WorkerProcess] = field(default_factory=list)

    def app(self, **overrides: Any) -> Any:
        """Build the in-process app from the same environment the workers see."""
        from core.app import create_app, reset_default_app
        from core.settings import load_settings

        reset_default_app()
        app = create_app(load_settings(**overrides))
        app.runtime.db.create_all()
        return app

    def start_worker(self, **kwargs: Any) -> WorkerProcess:
        """Start a real worker process (stopped at teardown)."""
        env = {**os.environ, **self.env}
        worker = WorkerProcess(env, self.tmp / f"worker{len(self.workers)}.log", **kwargs)
        self.workers.append(worker)
        return worker.start()

    def set(self, **variables: str) -> None:
        """Set environment variables for this process and workers started after."""
        for key, value in variables.items():
            self.env[key] = value
            self.monkeypatch.setenv(key, value)  # undone at teardown


@pytest.fixture
def e2e(
    tmp_path: Path, bt_env: dict[str, str], valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[E2E]:
    """Real broker + SQLite file + environment for end-to-end tests with real workers."""
    import redis

    redis.Redis.from_url(valkey_url).flushall()
    monkeypatch.setenv("REDIS_URL", valkey_url)
    root = str(Path(__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join(p for p in [root, os.environ.get("PYTHONPATH", "")] if p)
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    env = {**bt_env, "REDIS_URL": valkey_url, "PYTHONPATH": pythonpath}
    harness = E2E(tmp_path, env, monkeypatch)
    yield harness
    for worker in harness.workers:
        worker.stop()


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


@pytest.fixture
def smtp_server() -> Iterator[SMTPRecorder]:
    """A started SMTPRecorder, stopped at teardown."""
    server = SMTPRecorder().start()
    yield server
    server.stop()


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


def require_pg_bindir() -> Path:
    """The server binaries; skip the test without them (fail with BANKTASKS_REQUIRE_POSTGRES=1)."""
    bindir = pg_bindir()
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        message = "no PostgreSQL server binaries (apt-get install postgresql)"
        if os.environ.get("BANKTASKS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return bindir


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session; yields a URL without database name."""
    cluster = PgCluster(require_pg_bindir()).init()
    try:
        yield cluster.url
    finally:
        cluster.destroy()


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{postgres_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{postgres_url}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
