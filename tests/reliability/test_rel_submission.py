"""Faults 9 and 10: the caller's side of a submission (transactional submission).

9. The banking application's process is SIGKILLed between its commit and the publish:
   it submits e-mails with `delay_on_commit` in one transaction, commits, and dies before
   the publish that follows the commit. The rows are committed in `core_task_outbox`; the
   delivery plugin's relay (on a real beat) publishes them; a real worker sends each
   e-mail once. A second caller is SIGKILLed at a random moment while it commits one
   transaction after another: every committed submission runs once, nothing else runs.
10. Rollbacks after a submission (the whole transaction, and a savepoint) send nothing,
   while the submissions committed around them run.

`BANKTASKS_RELIABILITY_RUNS=20` runs each 20 times (`make reliability`).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from banktasks_testing import wait_for
from core.default_plugins.seed import seed
from core.outbox import OutboxMessage
from tests.reliability.helpers import (
    RECONCILER,
    RUNS,
    duplicates,
    ledger_totals,
    outbox,
    result_meta,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUCCEEDED = re.compile(r"send_email_notification\[([0-9a-f-]+)\] succeeded in")
FAILED = re.compile(r"send_email_notification\[([0-9a-f-]+)\] raised unexpected")

EMAILS = 5

# The caller: one transaction with EMAILS submissions; its own after-commit listener,
# registered before the submissions' (listeners run in order), kills the process after
# the commit and before the publish.
KILLED_AFTER_COMMIT = """
import os, signal, sys
from sqlalchemy import event
from core import create_app, load_settings
app = create_app(load_settings())
notify = app.tasks["notifications.send_email_notification"]
run = sys.argv[1]
with app.runtime.db.session() as session:
    event.listen(session, "after_commit", lambda s: os.kill(os.getpid(), signal.SIGKILL))
    for i in range(EMAILS):
        task_id = notify.delay_on_commit(
            session, user_id=1 + i, subject=f"Transfer {i}", message="Done.",
            idempotency_key=f"kill-{run}-{i}",
        )
        print(task_id, flush=True)
    session.commit()
print("not killed", flush=True)
""".replace("EMAILS", str(EMAILS))

# The caller killed at a random moment: transactions of one submission each, one after
# another; it prints a transaction's key once its commit returned.
COMMITTING = """
import sys
from core import create_app, load_settings
app = create_app(load_settings())
notify = app.tasks["notifications.send_email_notification"]
run = sys.argv[1]
for i in range(100000):
    with app.runtime.db.session() as session:
        notify.delay_on_commit(
            session, user_id=1 + i % 3, subject="Transfer", message="Done.",
            idempotency_key=f"loop-{run}-{i}",
        )
        print(f"begin loop-{run}-{i}", flush=True)
        session.commit()
    print(f"committed loop-{run}-{i}", flush=True)
"""


def caller(e2e, code: str, run: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(run)],
        env={**os.environ, **e2e.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outbox_rows(app) -> int:
    with app.runtime.db.session() as session:
        return len(session.scalars(select(OutboxMessage.task_id)).all())


def sent_keys(app, prefix: str) -> Counter[str]:
    """The notification keys with that prefix that reached their outcome (sent, or failed
    for good: a seeded user may be inactive), and how many outbox entries each has."""
    return Counter(
        e.idempotency_key.removeprefix("caller:")
        for e in outbox(app)
        if e.idempotency_key.startswith(f"caller:{prefix}") and e.status in {"sent", "failed"}
    )


def emails_at_the_backend(e2e) -> int:
    return len(list((Path(e2e.env["BANKTASKS_VAR_DIR"]) / "outbox").glob("*.eml")))


@pytest.mark.parametrize("run", range(RUNS))
def test_the_callers_process_killed_between_commit_and_publish(e2e, beat, figures, run):
    e2e.set(**RECONCILER, BANKTASKS_PLUGINS="notifications", DELIVERY_OUTBOX_GRACE_SECONDS="2")
    app = e2e.app()
    seed(app.runtime.db, users=EMAILS, transactions=10, seed_value=run)
    worker = e2e.start_worker(queues=["notifications", "delivery"], concurrency=2)
    sweeper = beat()

    # 9a: killed exactly in the window.
    proc = caller(e2e, KILLED_AFTER_COMMIT, run)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    ids = out.split()
    assert len(ids) == EMAILS and "not killed" not in out
    assert outbox_rows(app) == EMAILS  # committed, not published
    killed_at = time.monotonic()
    final = {"SUCCESS", "FAILURE"}
    wait_for(
        lambda: sum(m["status"] in final for m in result_meta(app, ids).values()) == EMAILS,
        60,
        "the relay to publish the committed e-mails and the worker to send them",
        0.2,
    )
    recovered_after = round(time.monotonic() - killed_at, 1)
    keys = sent_keys(app, f"kill-{run}-")
    assert keys == Counter({f"kill-{run}-{i}": 1 for i in range(EMAILS)})

    # 9b: killed at a random moment while committing one transaction after another.
    proc = caller(e2e, COMMITTING, run)
    wait_for(lambda: outbox_rows(app) or sent_keys(app, f"loop-{run}-"), 60, "the caller", 0.05)
    time.sleep(random.Random(run).uniform(0.5, 2.0))
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    begun = [line.split()[1] for line in out.splitlines() if line.startswith("begin ")]
    committed = [line.split()[1] for line in out.splitlines() if line.startswith("committed ")]
    # Committed: every key whose commit returned; maybe the last begun one too (killed after
    # its COMMIT reached the database but before the print).
    wait_for(lambda: not outbox_rows(app), 60, "the outbox to be relayed", 0.2)
    wait_for(lambda: _all_sent_but_parked_retries(app), 60, "the e-mails to be sent", 0.2)
    looped = sent_keys(app, f"loop-{run}-")
    assert set(committed) <= set(looped) <= set(begun), (committed[-3:], begun[-3:])
    assert all(n == 1 for n in looped.values())
    sweeper.stop()

    entries = outbox(app)
    assert len(entries) == len({e.idempotency_key for e in entries}) == EMAILS + len(looped)
    assert all(e.status in {"sent", "failed"} for e in entries)
    assert emails_at_the_backend(e2e) == sum(e.status == "sent" for e in entries)
    runs = Counter(SUCCEEDED.findall(worker.log()) + FAILED.findall(worker.log()))
    assert len(runs) == len(entries)  # one task per e-mail ran to its end
    totals = ledger_totals(app)
    figures.update(
        scenario="9. the caller SIGKILLed between its commit and the publish",
        injected=(
            f"SIGKILL of the caller (a) in an after-commit listener that runs before the "
            f"publish, with {EMAILS} e-mails submitted in the transaction; (b) at a random "
            f"moment while it committed one submission per transaction "
            f"({len(committed)} commits returned, {len(begun)} begun)"
        ),
        tasks_sent=EMAILS + len(looped),
        tasks_completed=len(runs),
        tasks_run_twice=sum(1 for n in runs.values() if n > 1),
        lost=(EMAILS - len(keys)) + len(set(committed) - set(looped)),
        duplicates=duplicates([e.idempotency_key for e in entries]),
        relayed_from_the_outbox=totals.get("outbox_relayed", 0),
        committed_at_the_kill_not_reported=len(set(looped) - set(committed)),
        seconds_from_the_kill_until_sent=recovered_after,
        outbox_grace_seconds=2,
    )


def _all_sent_but_parked_retries(app) -> bool:
    """Nothing queued, and every message a worker holds is a retry parked until a later time
    (an ETA): the second copy of an e-mail whose first copy held the send lease when the
    relay published it again (killed between publish and row delete) comes back only when
    the lease has expired, minutes later, and then finds the e-mail sent."""
    client = app.redis_client()
    if client.llen("notifications"):
        return False
    held = [json.loads(raw)[0]["headers"] for raw in client.hvals("unacked")]
    return all(headers.get("eta") for headers in held)


@pytest.mark.parametrize("run", range(RUNS))
def test_a_rollback_after_a_submission_sends_nothing(e2e, figures, run):
    e2e.set(BANKTASKS_PLUGINS="notifications")
    app = e2e.app()
    seed(app.runtime.db, users=3, transactions=10, seed_value=run)
    notify = app.tasks["notifications.send_email_notification"]
    worker = e2e.start_worker(queues=["notifications"], concurrency=1)  # FIFO: one at a time

    def submit(session, key: str) -> str:
        return notify.delay_on_commit(
            session, user_id=1, subject=key, message="Done.", idempotency_key=key
        )

    rolled_back: list[str] = []
    kept: list[str] = []
    with app.runtime.db.session() as session:
        rolled_back.append(submit(session, f"rb-{run}-whole"))
        session.rollback()  # the caller's business rule failed after the submission
    with app.runtime.db.session() as session:
        kept.append(submit(session, f"rb-{run}-kept-1"))
        with session.begin_nested() as savepoint:
            rolled_back.append(submit(session, f"rb-{run}-savepoint"))
            savepoint.rollback()
        session.commit()
    try:
        with app.runtime.db.session() as session:
            rolled_back.append(submit(session, f"rb-{run}-raised"))
            raise RuntimeError("the transfer failed")
    except RuntimeError:
        pass
    with app.runtime.db.session() as session:
        kept.append(submit(session, f"rb-{run}-kept-2"))  # sent last: when it ran, all did
        session.commit()
    wait_for(
        lambda: result_meta(app, kept).get(kept[-1], {}).get("status") == "SUCCESS",
        30,
        "the last committed e-mail",
        0.1,
    )
    wait_for(lambda: len(result_meta(app, kept)) == 2, 10, "both committed e-mails")
    assert result_meta(app, rolled_back) == {}
    assert not any(i in worker.log() for i in rolled_back)
    keys = sorted(e.idempotency_key for e in outbox(app))
    assert keys == [f"caller:rb-{run}-kept-1", f"caller:rb-{run}-kept-2"]
    assert outbox_rows(app) == 0
    assert app.redis_client().llen("notifications") == 0
    figures.update(
        scenario="10. a rollback after a submission",
        injected="a rollback of the whole transaction, of a savepoint, and an exception "
        "leaving the session block, each after a `delay_on_commit`; two commits around them",
        tasks_sent=len(kept),
        tasks_completed=len(result_meta(app, kept)),
        rolled_back=len(rolled_back),
        rolled_back_that_ran=len(result_meta(app, rolled_back)),
        lost=2 - len(result_meta(app, kept)),
        duplicates=duplicates(keys),
    )
