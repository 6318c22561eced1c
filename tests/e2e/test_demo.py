"""`banktasks demo` runs every plugin's task end to end and stops everything it started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.default_plugins.broker import EmbeddedValkey

pytestmark = pytest.mark.e2e


def test_demo_end_to_end(bt_env, tmp_path):
    env = {**os.environ, **bt_env}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", "demo", "--transactions", "600", "--users", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "all tasks succeeded" in text
    for name in (
        "fraud.analyze_fraud_patterns",
        "reports.generate_daily_reports",
        "export.export_transaction_data",
        "notifications.send_email_notification",
        "health.system_health_check",
    ):
        assert f"ok   {name}" in text, text
    assert '"large_transaction"' in text and '"velocity"' in text and '"structuring"' in text
    var = Path(bt_env["BANKTASKS_VAR_DIR"])
    assert list((var / "outbox").glob("*.eml"))
    assert list((var / "reports").glob("daily-report-*.json"))
    assert list((var / "exports").glob("transactions-u1-*.csv"))
    assert not EmbeddedValkey(var).is_running()  # the demo stopped its broker
