"""`banktasks health [--json]`: table, JSON and exit codes (0 ok, 1 degraded, 2 down)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from banktasks_testing import free_port

from .helpers import EVERY_APP, add_pending


def invoke(app: Any, *args: str) -> Any:
    """Run `health ARGS` from a command group the app's plugins filled (`register_commands`)."""
    group = click.Group("banktasks")
    app.runtime.hook.register_commands(cli=group)
    app.set_current()
    return CliRunner().invoke(group, ["health", *args])


def test_health_cli_table_ok_exits_0(app: Any) -> None:
    result = invoke(app)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["CHECK", "STATUS", "VALUE", "THRESHOLD", "MS"]
    assert {line.split()[0] for line in lines[1 : 1 + len(EVERY_APP)]} == EVERY_APP
    assert lines[-1].startswith("overall: ok (checked at ")


def test_health_cli_json_ok(app: Any) -> None:
    result = invoke(app, "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["status"] == "ok"
    assert set(report["checks"]) == EVERY_APP


def test_health_cli_degraded_exits_1(app: Any) -> None:
    add_pending(app, datetime.now(UTC) - timedelta(days=2))
    result = invoke(app, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["status"] == "degraded"
    assert report["checks"]["pending_transactions"]["value"] == 1
    table = invoke(app)
    assert table.exit_code == 1 and "overall: degraded" in table.stdout


def test_health_cli_down_exits_2(make_app: Any) -> None:
    app = make_app("health", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    result = invoke(app, "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["checks"]["broker"]["status"] == "down"


def _banktasks() -> str:
    return str(Path(sys.executable).with_name("banktasks"))


@pytest.mark.parametrize(("broken_broker", "code", "status"), [(False, 0, "ok"), (True, 2, "down")])
def test_health_console_script_as_a_probe(
    live_redis_url: str, broken_broker: bool, code: int, status: str
) -> None:
    # `live_redis_url` comes from an app that created the tables in the env's database.
    env = {**os.environ, "BANKTASKS_PLUGINS": "health", "REDIS_URL": live_redis_url}
    if broken_broker:
        env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.run(
        [_banktasks(), "health", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code, proc.stderr
    assert json.loads(proc.stdout)["status"] == status
