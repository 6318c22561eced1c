"""Tasks that fail for good land in the dead-letter table; `banktasks failed retry` resends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from banktasks_testing import send_unchecked, wait_for
from core.default_plugins.deadletters import EXHAUSTED, INVALID, PERMANENT, FailedTask

pytestmark = pytest.mark.e2e


@pytest.fixture
def acme(e2e, acme_site):
    e2e.set(PYTHONPATH=f"{acme_site}:{e2e.env['PYTHONPATH']}", BANKTASKS_PLUGINS="acme_rules")
    return e2e


def dead_letters(app) -> list[FailedTask]:
    with app.runtime.db.session() as session:
        return list(session.scalars(select(FailedTask).order_by(FailedTask.id)))


def test_exhausted_permanent_and_invalid_failures_are_recorded_once(acme):
    app = acme.app()
    acme.start_worker(queues=["acme_rules"], concurrency=2)
    exhausted = app.tasks["acme_rules.flaky"].delay(key="ex", fail_times=99)
    permanent = app.tasks["acme_rules.flaky"].delay(key="perm", error="value")
    invalid = send_unchecked(app, "acme_rules.flaky", kwargs={"key": "inv", "fail_times": "x"})
    for result in (exhausted, permanent, invalid):
        wait_for(result.ready, 60, "the task to finish")
        assert result.failed()
    rows = wait_for(lambda: len(dead_letters(app)) == 3 and dead_letters(app), 10, "3 rows")
    by_task = {row.task_id: row for row in rows}
    assert by_task[exhausted.id].reason == EXHAUSTED
    assert by_task[exhausted.id].attempts == 4  # first try + max_retries=3
    assert by_task[exhausted.id].kwargs == {"key": "ex", "fail_times": 99}
    assert by_task[exhausted.id].error_type == "ConnectionError"
    assert by_task[permanent.id].reason == PERMANENT
    assert by_task[permanent.id].attempts == 1
    assert by_task[invalid.id].reason == INVALID


def test_failed_list_and_retry_cli(acme):
    app = acme.app()
    acme.start_worker(queues=["acme_rules"])
    result = app.tasks["acme_rules.flaky"].delay(key="again", error="value")
    wait_for(result.ready, 30, "the task to fail")
    wait_for(lambda: dead_letters(app), 10, "a dead letter")
    env = {**os.environ, **acme.env}
    cli = [sys.executable, "-m", "core.cli", "failed"]
    listed = subprocess.run(
        [*cli, "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["task"] for r in rows] == ["acme_rules.flaky"]
    retried = subprocess.run(
        [*cli, "retry", str(rows[0]["id"])], env=env, capture_output=True, text=True, timeout=60
    )
    assert retried.returncode == 0, retried.stderr
    assert "sent again as" in retried.stdout
    again = subprocess.run(
        [*cli, "retry", str(rows[0]["id"])], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode != 0 and "already retried" in again.stderr
    # The resent task fails again (same arguments) and becomes a new dead letter.
    wait_for(lambda: len(dead_letters(app)) == 2, 30, "the second dead letter")
