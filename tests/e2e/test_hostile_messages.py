"""A message that is not JSON (e.g. pickle pushed onto a queue by hand) is never executed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection

from banktasks_testing import wait_for

pytestmark = pytest.mark.e2e


def test_pickle_message_is_rejected_and_logged_not_run(e2e, acme_site):
    e2e.set(PYTHONPATH=f"{acme_site}:{e2e.env['PYTHONPATH']}", BANKTASKS_PLUGINS="acme_rules")
    app = e2e.app()
    worker = e2e.start_worker(queues=["acme_rules"])
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": "acme_rules.flaky",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "attacker",
    }
    body = (
        (),
        {"key": "pickled"},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    )
    with Connection(app.conf.broker_url) as conn:
        conn.Producer(serializer="pickle").publish(
            body, routing_key="acme_rules", exchange="", headers=headers
        )
    wait_for(
        lambda: "pickle" in worker.log() and "untrusted" in worker.log(),
        30,
        "the worker to refuse the pickle message",
    )
    time.sleep(1)
    assert not (Path(e2e.env["BANKTASKS_VAR_DIR"]) / "attempts-pickled.jsonl").exists()
    # The refused message does not block the queue: a proper task still runs.
    assert app.tasks["acme_rules.flaky"].delay(key="after").get(timeout=30)["attempts"] == 1
