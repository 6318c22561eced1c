"""End to end: a third-party plugin installed as a distribution, real worker, real Valkey."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from celery.exceptions import TimeoutError as CeleryTimeout

from banktasks_testing import send_unchecked
from core import TaskArgumentError

pytestmark = pytest.mark.e2e


@pytest.fixture
def acme(e2e, acme_site):
    """The e2e harness with the acme_rules distribution on the workers' PYTHONPATH."""
    e2e.set(PYTHONPATH=f"{acme_site}:{e2e.env['PYTHONPATH']}", BANKTASKS_PLUGINS="acme_rules")
    return e2e


def attempts(e2e, key: str) -> list[dict]:
    path = Path(e2e.env["BANKTASKS_VAR_DIR"]) / f"attempts-{key}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_plugin_task_runs_in_a_real_worker_and_retries_by_policy(acme):
    app = acme.app()
    acme.start_worker(queues=["acme_rules", "acme-fast"], concurrency=2)

    assert app.tasks["acme_rules.add"].delay(x=40, y="2").get(timeout=30) == {"sum": 42}

    result = app.tasks["acme_rules.flaky"].delay(key="retry", fail_times=2)
    assert result.get(timeout=60) == {"key": "retry", "attempts": 3}
    tries = attempts(acme, "retry")
    assert [t["retries"] for t in tries] == [0, 1, 2]
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(tries)]
    # RetryPolicy(backoff=1, jitter=False): countdowns 1 s then 2 s.
    assert 0.9 <= gaps[0] < 1.9, gaps
    assert gaps[1] >= 1.9 and gaps[1] < 3.2, gaps


def test_other_exception_fails_at_once(acme):
    app = acme.app()
    acme.start_worker(queues=["acme_rules"])
    result = app.tasks["acme_rules.flaky"].delay(key="perm", error="value")
    with pytest.raises(ValueError, match="permanent problem"):
        result.get(timeout=30)
    time.sleep(1.5)
    assert len(attempts(acme, "perm")) == 1


def test_bad_argument_fails_in_caller_and_nothing_is_enqueued(acme):
    app = acme.app()
    broker = redis.Redis.from_url(app.conf.broker_url)
    with pytest.raises(TaskArgumentError, match="argument 'x'='forty'"):
        app.tasks["acme_rules.add"].delay(x="forty")
    with pytest.raises(TaskArgumentError, match="unexpected keyword argument 'z'"):
        app.tasks["acme_rules.add"].delay(x=1, z=2)
    assert broker.llen("acme-fast") == 0
    app.tasks["acme_rules.add"].delay(x=1)
    assert broker.llen("acme-fast") == 1


def test_worker_rejects_bad_arguments_without_retry(acme):
    """A message that bypasses the caller's check is validated again in the worker."""
    app = acme.app()
    acme.start_worker(queues=["acme_rules"])
    result = send_unchecked(app, "acme_rules.flaky", kwargs={"key": "w", "fail_times": "many"})
    with pytest.raises(Exception, match="fail_times") as info:
        result.get(timeout=30)
    assert type(info.value).__name__ == "TaskArgumentError"
    assert attempts(acme, "w") == []  # the function body never ran
    assert result.state == "FAILURE"


def test_disabling_the_plugin_removes_task_schedule_and_queue(acme):
    app = acme.app()
    assert "acme_rules.add" in app.tasks
    assert "acme-add" in app.conf.beat_schedule
    acme.set(BANKTASKS_PLUGINS="acme_rules,health", BANKTASKS_DISABLE="acme_rules")
    app = acme.app()
    assert "acme_rules.add" not in app.tasks
    assert "acme-add" not in app.conf.beat_schedule
    assert "acme-fast" not in {q.name for q in app.conf.task_queues}


def test_banktasks_plugins_json_and_celery_inspect(acme):
    env = {**acme.env}
    import os

    full_env = {**os.environ, **env}
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", "plugins", "--json"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    acme_row = rows["acme_rules"]
    assert acme_row["enabled"] and acme_row["version"] == "1.0"
    assert acme_row["tasks"] == ["acme_rules.add", "acme_rules.flaky", "acme_rules.notify"]
    assert acme_row["queues"] == ["acme-fast", "acme_rules"]
    assert "acme-add" in acme_row["schedules"]
    assert rows["fraud"]["enabled"] is False

    acme.start_worker(queues=["acme_rules"])
    inspect = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "core", "inspect", "registered", "--timeout", "5"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inspect.returncode == 0, inspect.stdout + inspect.stderr
    assert "acme_rules.flaky" in inspect.stdout


def test_unreachable_worker_times_out_not_loses(acme):
    """With no worker, a sent task waits in its queue (acks_late): nothing is lost."""
    app = acme.app()
    result = app.tasks["acme_rules.add"].delay(x=1)
    with pytest.raises(CeleryTimeout):
        result.get(timeout=1)
    acme.start_worker(queues=["acme-fast"])
    assert result.get(timeout=30) == {"sum": 2}


def test_log_lines_inside_a_task_carry_its_context_and_are_redacted(acme):
    acme.set(LOG_FORMAT="json")
    app = acme.app()
    worker = acme.start_worker(queues=["acme-fast"])
    result = app.tasks["acme_rules.add"].delay(x=2, y=3)
    assert result.get(timeout=30) == {"sum": 5}
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    adding = [line for line in lines if line.get("event") == "adding"]
    assert len(adding) == 1, worker.log()[-3000:]
    line = adding[0]
    assert line["task_id"] == result.id
    assert line["task_name"] == "acme_rules.add"
    assert line["plugin"] == "acme_rules"
    assert line["retries"] == 0
    assert line["owner"] == "a***@example.com" and line["password"] == "[REDACTED]"
    assert "hunter2" not in worker.log() and "ann@example.com" not in worker.log()
    # Celery's own lines go through the same JSON pipeline.
    assert any(str(line.get("logger", "")).startswith("celery") for line in lines)
