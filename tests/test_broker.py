"""The embedded Valkey broker: one shared server, loopback only, password required."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import redis

from core.default_plugins.broker import EmbeddedValkey


@pytest.fixture
def server(tmp_path):
    embedded = EmbeddedValkey(tmp_path / "var")
    yield embedded
    embedded.stop()


def test_started_once_and_shared_by_concurrent_processes(server, tmp_path):
    script = textwrap.dedent(f"""
        from core.default_plugins.broker import EmbeddedValkey
        print(EmbeddedValkey({str(tmp_path / "var")!r}).ensure_running())
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    urls = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(urls) == 1
    pid = int((server.dir / "valkey.pid").read_text())
    assert redis.Redis.from_url(urls.pop()).info("server")["process_id"] == pid


def test_password_required_and_loopback_only(server):
    url = server.ensure_running()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port).ping()
    assert redis.Redis.from_url(url).config_get("bind")["bind"] == "127.0.0.1"
    assert oct((server.dir / "password").stat().st_mode & 0o777) == "0o600"
    assert redis.Redis.from_url(url).config_get("appendonly")["appendonly"] == "yes"


def test_stop_keeps_queued_data(server):
    url = server.ensure_running()
    redis.Redis.from_url(url).lpush("q", "m1")
    assert server.stop()
    assert not server.is_running()
    server.ensure_running()
    assert redis.Redis.from_url(url).lrange("q", 0, -1) == [b"m1"]
