"""Missed schedules, backlog and dead letters with real processes: Valkey, `celery -A core
worker` and `celery -A core beat`; the health checks and `banktasks schedules` see them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banktasks_testing import wait_for
from core.default_plugins.schedules import key
from tests.conftest import install_dist

pytestmark = pytest.mark.e2e

PROBE = '''
"""A plugin with one beat entry that succeeds and one whose task always fails."""
from core import Schedule, hookimpl, task


@task(queue="probe")
def tick() -> dict:
    """Succeeds."""
    return {"ok": True}


@task(queue="probe")
def broken() -> None:
    """Fails for good."""
    raise ValueError("the ledger is on fire")


@hookimpl
def register_tasks():
    return [tick, broken]


@hookimpl
def register_schedule(settings):
    return [Schedule("probe-tick", tick, every=1), Schedule("probe-broken", broken, every=1)]
'''


@pytest.fixture
def probe_site(tmp_path: Path) -> Iterator[Path]:
    source = tmp_path / "probe_src.py"
    source.write_text(PROBE)
    site = install_dist(
        tmp_path / "site", "sched_probe", "sched-probe", source, {"probe": "sched_probe"}
    )
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("sched_probe", None)


def start_beat(e2e: Any) -> subprocess.Popen[bytes]:
    log = (e2e.tmp / "beat.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "core", "beat", "-l", "INFO",
         "-s", str(e2e.tmp / "schedule")],
        env={**os.environ, **e2e.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(20)


def banktasks(e2e: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env={**os.environ, **e2e.env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def checks(app: Any) -> dict[str, Any]:
    report = app.tasks["health.system_health_check"].apply().get()
    return dict(report["checks"])


def test_beat_entries_are_tracked_and_a_failing_one_turns_health_degraded(
    e2e: Any, probe_site: Path
) -> None:
    e2e.set(
        PYTHONPATH=f"{probe_site}:{e2e.env['PYTHONPATH']}",
        BANKTASKS_PLUGINS="probe,health",
        SCHEDULES_GRACE_SECONDS="3",
    )
    app = e2e.app()
    redis = app.redis_client()
    e2e.start_worker(queues=["probe"])
    beat = start_beat(e2e)
    try:
        wait_for(lambda: redis.hget(key("probe-tick"), "last_success"), 40, "a scheduled success")
        wait_for(lambda: redis.hget(key("probe-broken"), "last_failure"), 20, "a failure")
        first_seen = redis.hget(key("probe-broken"), "first_seen")
        assert first_seen, "beat's start is when tracking begins"
        time.sleep(5)  # past the broken entry's due time + grace
        found = checks(app)["missed_schedules"]
        assert found["status"] == "degraded", found
        assert found["value"] == 1
        assert "probe-broken (probe.broken): never succeeded" in found["detail"]
        assert "last run failed: ValueError: the ledger is on fire" in found["detail"]
        assert "probe-tick" not in found["detail"]

        listed = banktasks(e2e, "schedules")
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
        assert rows["probe-tick"].split()[-1] == "ok" and "every 1s" in rows["probe-tick"]
        assert "never" not in rows["probe-tick"]
        assert rows["probe-broken"].split()[-1] == "late"
        as_json = {r["entry"]: r for r in json.loads(banktasks(e2e, "schedules", "--json").stdout)}
        assert as_json["probe-tick"]["last_status"] == "succeeded"
        assert as_json["probe-tick"]["last_success"] and as_json["probe-tick"]["next_due"]

        dead = checks(app)["dead_letters"]  # each failed run is a dead letter
        assert dead["status"] == "degraded" and dead["value"] >= 1, dead
    finally:
        stop(beat)
    # beat stopped: the entry that succeeded stops succeeding, and is late after 1 s + 3 s
    time.sleep(5)
    found = checks(app)["missed_schedules"]
    assert found["value"] == 2 and "probe-tick (probe.tick): last success" in found["detail"]


def test_a_backlog_turns_degraded_and_a_worker_clears_it(e2e: Any) -> None:
    e2e.set(BANKTASKS_PLUGINS="health", HEALTH_QUEUE_MAX_AGE_SECONDS="2")
    app = e2e.app()
    task = app.tasks["health.system_health_check"]
    for _ in range(3):
        task.delay()
    assert checks(app)["queue_backlog"]["status"] == "ok"  # first seen now
    time.sleep(2.5)
    found = checks(app)["queue_backlog"]
    assert found["status"] == "degraded", found
    assert "queue 'health': 3 message(s)" in found["detail"]
    e2e.start_worker()
    wait_for(lambda: app.redis_client().llen("health") == 0, 60, "the worker drains the queue")
    assert checks(app)["queue_backlog"]["status"] == "ok"
