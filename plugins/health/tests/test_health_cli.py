"""`banktasks health [--json]`: table, JSON and exit codes (0 ok, 1 degraded, 2 down)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import plugins.health
from core.cli import cli
from core.models import Account, Transaction, User
from core.testing import free_port


def old_pending(app: Any) -> None:
    with app.runtime.db.session() as s:
        s.add(User(id=1, email="user1@example.com", full_name="Ada"))
        s.add(Account(id=1, user_id=1, number="400000000001"))
        s.flush()
        s.add(
            Transaction(
                account_id=1,
                amount=Decimal("1.00"),
                kind="payment",
                status="pending",
                created_at=datetime.now(UTC) - timedelta(days=2),
            )
        )


def invoke(app: Any, *args: str) -> Any:
    app.runtime.plugins.pm.hook.register_commands(cli=cli)
    return CliRunner().invoke(cli, ["health", *args])


def test_health_cli_table_ok_exits_0(make_app: Any) -> None:
    app = make_app(plugins=[plugins.health])
    result = invoke(app)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["CHECK", "STATUS", "VALUE", "THRESHOLD", "MS"]
    assert {line.split()[0] for line in lines[1:4]} == {
        "broker",
        "database",
        "pending_transactions",
    }
    assert lines[-1].startswith("overall: ok (checked at ")


def test_health_cli_json_ok(make_app: Any) -> None:
    app = make_app(plugins=[plugins.health])
    result = invoke(app, "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["status"] == "ok"
    assert set(report["checks"]) == {"broker", "database", "pending_transactions"}


def test_health_cli_degraded_exits_1(make_app: Any) -> None:
    app = make_app(plugins=[plugins.health])
    old_pending(app)
    result = invoke(app, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["status"] == "degraded"
    assert report["checks"]["pending_transactions"]["value"] == 1
    table = invoke(app)
    assert table.exit_code == 1 and "overall: degraded" in table.stdout


def test_health_cli_down_exits_2(make_app: Any) -> None:
    app = make_app(plugins=[plugins.health], redis_url=f"redis://127.0.0.1:{free_port()}/0")
    result = invoke(app, "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["checks"]["broker"]["status"] == "down"


def _banktasks() -> str:
    return str(Path(sys.executable).with_name("banktasks"))


@pytest.mark.parametrize(("broken_broker", "code", "status"), [(False, 0, "ok"), (True, 2, "down")])
def test_health_console_script_as_a_probe(
    make_app: Any, bt_env: dict[str, str], broken_broker: bool, code: int, status: str
) -> None:
    make_app(plugins=[plugins.health])  # creates the tables in the env's database
    env = {**os.environ, "BANKTASKS_PLUGINS": "health"}
    if broken_broker:
        env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.run(
        [_banktasks(), "health", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code, proc.stderr
    assert json.loads(proc.stdout)["status"] == status
