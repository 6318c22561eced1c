"""Beat runs once: a second beat process waits for RedBeat's lock in Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from banktasks_testing import wait_for

pytestmark = pytest.mark.e2e


def test_two_beats_send_each_periodic_task_once(e2e, acme_site):
    e2e.set(
        PYTHONPATH=f"{acme_site}:{e2e.env['PYTHONPATH']}",
        BANKTASKS_PLUGINS="acme_rules",
        ACME_TICK_SECONDS="1",
    )
    app = e2e.app()
    assert app.conf.beat_schedule["acme-tick"]["schedule"].total_seconds() == 1
    broker = redis.Redis.from_url(app.conf.broker_url)
    env = {**os.environ, **e2e.env}
    logs = [e2e.tmp / f"beat{i}.log" for i in range(2)]
    beats = []
    for i, log in enumerate(logs):
        with log.open("wb") as out:
            beats.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "core",
                        "beat",
                        "-l",
                        "INFO",
                        "-s",
                        str(e2e.tmp / f"schedule{i}"),
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        wait_for(lambda: broker.llen("acme-fast") >= 1, 30, "the first tick")
        start = broker.llen("acme-fast")
        time.sleep(6)
        sent = broker.llen("acme-fast") - start
        holders = [log for log in logs if "Acquired lock" in log.read_text()]
    finally:
        for beat in beats:
            os.killpg(beat.pid, signal.SIGTERM)
        for beat in beats:
            beat.wait(20)
    assert len(holders) == 1, [log.read_text()[-2000:] for log in logs]
    assert 3 <= sent <= 8, f"{sent} ticks in 6 s from two beats: expected about 6, not 12"
