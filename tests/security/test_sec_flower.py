"""Findings 8 and 7a, with real processes.

8: `celery -A core flower` and `banktasks flower` listen on 127.0.0.1 unless the operator
asks for another address (`--address=…`, FLOWER_ADDRESS). In production a non-loopback
address needs TLS (`--certfile`/`--keyfile`), or FLOWER_BEHIND_TLS_PROXY=true (a warning at
every start); a weak login given on Flower's own command line is refused like
FLOWER_BASIC_AUTH.

7a: what Flower shows of a worker (its `conf` remote-control reply, Flower's /api/workers and
worker page) holds no password: not the broker's, not the database's, not a plugin's."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from banktasks_testing import free_port, http_status, wait_for
from banktasks_testing.processes import stop_group

pytestmark = pytest.mark.e2e

LOGIN = "ops:Vq7-tR2m-Xk9p-Lw4z"
PRODUCTION = {
    "BANKTASKS_ENV": "production",
    "DATABASE_URL": "postgresql+psycopg://bank:Db-pw-5e1d2c9a4f@127.0.0.1:9/bank",
    "FLOWER_BASIC_AUTH": LOGIN,
}
"""Strong production settings (the broker is the session's Valkey: loopback, a password);
Flower never touches the database."""


def listening(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port` (from /proc/net/tcp*)."""
    found = set()
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                address, _, port_hex = fields[1].partition(":")
                if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                if family == 4:
                    found.add(str(ipaddress.IPv4Address(raw[::-1])))
                else:  # four 32-bit words, each in host (little-endian) order
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(str(ipaddress.IPv6Address(words)))
    return found


def outside_address() -> str | None:
    """An address of this machine that is not loopback (no packet is sent), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.123", 9))
            address = str(sock.getsockname()[0])
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def fetch(url: str, auth: str) -> str:
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.read().decode())


@dataclass
class Flower:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def up(self, scheme: str = "http", context: Any = None) -> bool:
        url = f"{scheme}://127.0.0.1:{self.port}/healthcheck"
        return http_status(url, context=context) == 200

    def wait_up(self, scheme: str = "http", context: Any = None) -> None:
        wait_for(
            lambda: self.up(scheme, context) or self.proc.poll() is not None, 60, "flower", 0.2
        )
        assert self.proc.poll() is None, self.output()


@pytest.fixture
def flowers(e2e: Any) -> Iterator[Any]:
    """`start(how, *args, **env)`: a Flower process (`banktasks flower` or `celery -A core
    flower`) on a free port; every one is stopped at teardown."""
    started: list[Flower] = []

    def start(how: str, *args: str, **env: str) -> Flower:
        port = free_port()
        command = (
            [sys.executable, "-m", "core.cli", "flower"]
            if how == "banktasks"
            else [sys.executable, "-m", "celery", "-A", "core", "flower"]
        )
        log = e2e.tmp / f"flower-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, f"--port={port}", *args],
                env={**os.environ, **e2e.env, **env},
                cwd=e2e.tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        flower = Flower(proc, port, log)
        started.append(flower)
        return flower

    yield start
    for flower in started:
        stop_group(flower.proc, 20)


LOOPBACK_ONLY = {"127.0.0.1"}
EVERYWHERE = {"0.0.0.0"}


def test_flower_listens_on_loopback_unless_asked_otherwise(e2e, flowers):
    e2e.set(BANKTASKS_PLUGINS="health", FLOWER_BASIC_AUTH=LOGIN)
    cases = [
        (flowers("celery"), LOOPBACK_ONLY),
        (flowers("banktasks"), LOOPBACK_ONLY),
        (flowers("celery", "--address=0.0.0.0"), EVERYWHERE),
        (flowers("celery", FLOWER_ADDRESS="0.0.0.0"), EVERYWHERE),
        (flowers("banktasks", FLOWER_ADDRESS="0.0.0.0"), EVERYWHERE),
    ]
    outside = outside_address()
    failures = []
    for flower, expected in cases:
        flower.wait_up()
        where = listening(flower.port)
        if where != expected:
            failures.append(f"{flower.proc.args}: listens on {sorted(where)}")
        if outside and reachable(outside, flower.port) != (expected == EVERYWHERE):
            failures.append(f"{flower.proc.args}: reachable on {outside}: {expected}")
        assert http_status(f"http://127.0.0.1:{flower.port}/api/workers") == 401
    assert not failures, "\n".join(failures)


def configuration_error(flower: Flower) -> str:
    """The single line a refused Flower printed (it exited 2, having never listened)."""
    assert flower.proc.wait(60) == 2, flower.output()
    lines = [line for line in flower.output().splitlines() if line.strip()]
    refused = [line for line in lines if line.startswith("banktasks: configuration error: ")]
    assert len(refused) == 1, flower.output()
    assert "Traceback" not in flower.output()
    assert not listening(flower.port)
    return refused[0]


def test_production_refuses_plain_http_on_a_network_address(e2e, flowers):
    e2e.set(BANKTASKS_PLUGINS="health", **PRODUCTION)
    refused = [
        flowers("celery", "--address=0.0.0.0"),
        flowers("banktasks", "--address=0.0.0.0"),
        flowers("celery", FLOWER_ADDRESS="::"),
        flowers("celery", "--address="),
    ]
    weak_on_command_line = flowers("celery", "--basic-auth=admin:password1")
    loopback = flowers("celery")
    for flower in refused:
        line = configuration_error(flower)
        for says in ("--address", "FLOWER_ADDRESS", "--certfile", "FLOWER_BEHIND_TLS_PROXY"):
            assert says in line, line
    line = configuration_error(weak_on_command_line)
    assert "at least 12" in line and "password1" not in line, line
    loopback.wait_up()
    assert listening(loopback.port) == LOOPBACK_ONLY


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_production_network_address_with_tls_or_behind_a_proxy(e2e, flowers):
    import ssl

    e2e.set(BANKTASKS_PLUGINS="health", **PRODUCTION)
    cert, key = make_certificate(e2e.tmp)
    tls = flowers("celery", "--address=0.0.0.0", f"--certfile={cert}", f"--keyfile={key}")
    proxied = [
        flowers("celery", "--address=0.0.0.0", FLOWER_BEHIND_TLS_PROXY="true"),
        flowers("banktasks", FLOWER_ADDRESS="0.0.0.0", FLOWER_BEHIND_TLS_PROXY="true"),
    ]
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    tls.wait_up("https", context)
    assert listening(tls.port) == EVERYWHERE
    assert "FLOWER_BEHIND_TLS_PROXY" not in tls.output()
    for flower in proxied:
        flower.wait_up()
        assert listening(flower.port) == EVERYWHERE
        warnings = [
            line
            for line in flower.output().splitlines()
            if "FLOWER_BEHIND_TLS_PROXY" in line and "warning" in line.lower()
        ]
        assert len(warnings) == 1, flower.output()


# -- 7a: the worker's configuration, as Flower shows it ----------------------------------


def secrets_of(env: dict[str, str]) -> dict[str, str]:
    """Every password the worker was given: the broker's, the database's, the SMTP one."""
    found = {"SMTP_PASSWORD": env["SMTP_PASSWORD"]}
    for name in ("REDIS_URL", "DATABASE_URL"):
        password = urlsplit(env[name]).password
        assert password, f"{name} has no password to look for"
        found[name] = password
    return found


def test_flower_shows_no_password_of_the_worker(e2e, flowers):
    e2e.set(
        BANKTASKS_PLUGINS="health,notifications",
        FLOWER_BASIC_AUTH=LOGIN,
        DATABASE_URL=PRODUCTION["DATABASE_URL"],
        SMTP_HOST="127.0.0.1",
        SMTP_SECURITY="starttls",
        SMTP_USERNAME="mailer",
        SMTP_PASSWORD="Smtp-pw-7c2e8d0b6a",
    )
    secrets = secrets_of(e2e.env)
    worker = e2e.start_worker()
    from core import create_app, load_settings

    app = create_app(load_settings())  # no tables: the database is not there (nor needed)
    replies: dict[str, Any] = {}
    for with_defaults in (False, True):
        reply = app.control.inspect(timeout=5).conf(with_defaults=with_defaults)
        assert reply, "the worker did not answer `conf`"
        replies[f"conf(with_defaults={with_defaults})"] = reply
    flower = flowers("celery")
    flower.wait_up()
    base = f"http://127.0.0.1:{flower.port}"
    replies["/api/workers"] = wait_for(
        lambda: (t := fetch(f"{base}/api/workers?refresh=1", LOGIN)) != "{}" and t, 60, "workers"
    )
    name = next(iter(json.loads(replies["/api/workers"])))
    replies["/worker page"] = fetch(f"{base}/worker/{quote(name)}", LOGIN)
    assert "broker_url" in replies["/worker page"], "the page shows the worker's config"
    shown = {where: json.dumps(reply, default=str) for where, reply in replies.items()}
    leaks = [
        f"{where} shows {setting}"
        for where, text in shown.items()
        for setting, password in secrets.items()
        if password in text or quote(password) in text
    ]
    assert not leaks, leaks
    worker.stop()
