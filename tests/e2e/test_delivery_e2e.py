"""The `delivery` default plugin with real processes: beat sends the sweep, a worker runs it,
the reconciler sends a lost message again and a worker runs it once; transactional
submission reaches a worker after the commit, and a rollback sends nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from banktasks_testing import wait_for
from core.default_plugins.delivery import ledger
from core.default_plugins.seed import seed
from tests.reliability.helpers import RECONCILER, ledger_totals, outbox, result_meta

pytestmark = pytest.mark.e2e


def test_a_message_the_broker_lost_is_sent_again_by_beats_sweep_and_runs_once(e2e, beat):
    e2e.set(**RECONCILER, BANKTASKS_PLUGINS="notifications")
    app = e2e.app()
    assert set(app.conf.beat_schedule) == {"delivery-sweep"}
    seed(app.runtime.db, users=3, transactions=10, seed_value=3)
    client = app.redis_client()
    notify = app.tasks["notifications.send_email_notification"]
    ids = [
        notify.delay(user_id=1 + i, subject=f"s{i}", message="hi", idempotency_key=f"k{i}").id
        for i in range(3)
    ]
    # A worker's BRPOP took the oldest one and died before recording it as unacknowledged.
    lost = json.loads(client.rpop("notifications"))["headers"]["id"]
    assert lost == ids[0] and ledger.tracked(client) == 3
    worker = e2e.start_worker(queues=["notifications", "delivery"])
    sweeper = beat()
    try:
        wait_for(
            lambda: (
                all(m["status"] == "SUCCESS" for m in result_meta(app, ids).values())
                and len(result_meta(app, ids)) == 3
            ),
            60,
            "the three e-mails, the lost one re-sent",
            0.5,
        )
    finally:
        sweeper.stop()
    assert ledger_totals(app)["resent"] == 1
    runs = [line for line in worker.log().splitlines() if "succeeded in" in line]
    assert sum(f"send_email_notification[{lost}]" in line for line in runs) == 1  # once
    assert any("delivery.sweep[" in line and lost in line for line in runs)  # re-sent it
    entries = outbox(app)
    assert sorted(e.idempotency_key for e in entries) == ["caller:k0", "caller:k1", "caller:k2"]
    assert all(e.status == "sent" for e in entries)
    assert len(list((Path(e2e.env["BANKTASKS_VAR_DIR"]) / "outbox").glob("*.eml"))) == 3
    wait_for(lambda: not any(client.hexists(ledger.MESSAGES, i) for i in ids), 10, "settled")
    assert '"resent": 1' in _cli(e2e, "delivery", "status", "--json")


def _cli(e2e, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env={**e2e.env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_transactional_submission_reaches_a_worker_only_after_the_commit(e2e):
    e2e.set(BANKTASKS_PLUGINS="health")
    app = e2e.app()
    check = app.tasks["health.system_health_check"]
    e2e.start_worker(queues=["health"])
    with app.runtime.db.session() as session:
        rolled_back = check.delay_on_commit(session)
        session.rollback()
        committed = check.delay_on_commit(session)
        time.sleep(1)
        assert result_meta(app, [committed]) == {}  # not sent before the commit
        committed_at = time.monotonic()
        session.commit()
    wait_for(
        lambda: result_meta(app, [committed]).get(committed, {}).get("status") == "SUCCESS",
        30,
        "the committed health check",
        0.05,
    )
    assert time.monotonic() - committed_at < 10
    time.sleep(1)
    assert result_meta(app, [rolled_back]) == {}  # never sent
    assert app.redis_client().llen("health") == 0


def test_the_readmes_transactional_submission_runs_as_printed(e2e):
    from core.celery import reset_default_app
    from tests.test_readme import README

    text = README.read_text()
    start = text.index("submit it **in the same transaction**")
    block = text[start:].split("```python\n", 1)[1].split("```", 1)[0]
    e2e.set(BANKTASKS_PLUGINS="notifications")
    app = e2e.app()
    seed(app.runtime.db, users=1, transactions=5, seed_value=1)
    worker = e2e.start_worker(queues=["notifications"])
    reset_default_app()
    exec(block, {})
    wait_for(
        lambda: [e.status for e in outbox(app)] == ["sent"],
        30,
        "the README's e-mail to be sent",
        0.1,
    )
    assert [e.idempotency_key for e in outbox(app)] == ["caller:transfer-1001"]
    assert "send_email_notification[" in worker.log()
