"""Flower: authentication always on (UI, API and /metrics), HTTPS options start."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import pytest

from banktasks_testing import free_port, http_status, wait_for

pytestmark = pytest.mark.e2e


def start(e2e, cmd: list[str]) -> subprocess.Popen[bytes]:
    log = (e2e.tmp / "flower.log").open("wb")
    return subprocess.Popen(
        cmd,
        env={**os.environ, **e2e.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.parametrize("how", ["banktasks", "celery"])
def test_every_page_needs_credentials(e2e, how):
    e2e.set(BANKTASKS_PLUGINS="health", FLOWER_BASIC_AUTH="ops:s3cret-pass")
    port = free_port()
    cmd = (
        [sys.executable, "-m", "core.cli", "flower", f"--port={port}"]
        if how == "banktasks"
        else [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "core",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ]
    )
    proc = start(e2e, cmd)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_status(f"{base}/healthcheck") == 200, 40, "flower to listen")
        for path in ("/", "/api/workers", "/api/tasks", "/metrics"):
            assert http_status(base + path) == 401, path
            assert http_status(base + path, "admin:admin") == 401, path
            assert http_status(base + path, "ops:s3cret-pass") == 200, path
    finally:
        proc.terminate()
        proc.wait(20)


def test_https_options_start(e2e):
    cert, key = e2e.tmp / "cert.pem", e2e.tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    e2e.set(BANKTASKS_PLUGINS="health", FLOWER_BASIC_AUTH="ops:s3cret-pass")
    port = free_port()
    proc = start(
        e2e,
        [
            sys.executable,
            "-m",
            "core.cli",
            "flower",
            f"--port={port}",
            f"--certfile={cert}",
            f"--keyfile={key}",
        ],
    )
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        base = f"https://127.0.0.1:{port}"
        wait_for(lambda: http_status(f"{base}/healthcheck", context=context) == 200, 40, "https")
        assert http_status(f"{base}/api/workers", context=context) == 401
        assert http_status(f"{base}/api/workers", "ops:s3cret-pass", context=context) == 200
    finally:
        proc.terminate()
        proc.wait(20)
