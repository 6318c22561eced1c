"""The seed document's examples, verbatim, against a real worker with every plugin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from banktasks_testing import wait_for
from core.default_plugins.seed import seed

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SEED_DOC = ROOT / "docs" / "seed-celery.md"  # a copy of ../shared/seed-celery.md


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def seed_usage_example() -> str:
    """The seed's 'Task Usage Examples' block (it uses export_transaction_data unimported)."""
    text = SEED_DOC.read_text()
    return next(b for b in python_blocks(text) if "send_email_notification.delay(" in b)


def test_docs_copy_of_the_seed_is_current():
    shared = ROOT.parent / "shared" / "seed-celery.md"
    if not shared.exists():
        pytest.skip(f"{shared} is not beside this checkout; docs/seed-celery.md is used")
    assert SEED_DOC.read_text() == shared.read_text()


def design_usage_example() -> str:
    path = ROOT / "README.md"
    return next(
        b
        for b in python_blocks(path.read_text())
        if b.startswith("from core.tasks import generate_daily_reports")
    )


def test_seed_examples_run_verbatim(e2e, smtp_server):
    e2e.set(EMAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_server.port))
    app = e2e.app()
    seed(
        app.runtime.db,
        users=5,
        transactions=400,
        seed_value=3,
        now=datetime(2024, 2, 1, tzinfo=UTC),
    )
    e2e.start_worker(concurrency=2)

    namespace: dict = {}
    exec(design_usage_example(), namespace)  # the README/DESIGN form: all three imported
    namespace = {"export_transaction_data": namespace["export_transaction_data"]}
    exec(seed_usage_example(), namespace)  # the seed's own block, as printed

    def account_updates() -> list:
        return [m for m in smtp_server.messages if m["Subject"] == "Account Update"]

    wait_for(lambda: len(account_updates()) == 2, 60, "two 'Account Update' e-mails")
    assert {m["To"] for m in account_updates()} == {"user1@example.com"}
    var = Path(e2e.env["BANKTASKS_VAR_DIR"])
    exports = wait_for(
        lambda: sorted((var / "exports").glob("transactions-u1-2024-01-01-2024-01-31-*.csv")),
        60,
        "two January exports of user 1",
    )
    wait_for(lambda: len(list((var / "exports").glob("*.csv"))) == 2, 60, "both exports")
    header = exports[0].read_text().splitlines()[0]
    assert "amount" in header and "account" in header
    wait_for(lambda: list((var / "reports").glob("daily-report-*.json")), 60, "a daily report")
    # The report's summary reaches the admins through notifications' on_report_generated.
    wait_for(
        lambda: any(m["To"] == "admin@banking.com" for m in smtp_server.messages),
        60,
        "the admin summary e-mail",
    )


def test_seed_celery_commands_work_with_config(e2e):
    e2e.set(BANKTASKS_PLUGINS="health")
    e2e.app()
    e2e.start_worker()
    env = {**os.environ, **e2e.env}
    outputs = {}
    for command in ("active", "registered", "stats"):
        out = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "config", "inspect", command, "--timeout", "5"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        outputs[command] = out.stdout
    assert "health.system_health_check" in outputs["registered"]
    assert '"pid"' in outputs["stats"] or "pid" in outputs["stats"]
