"""Fault 1: the worker's pool children are SIGKILLed while a fraud analysis, an export and
an e-mail are running; each task is redelivered, completes on a second worker, and writes once.

How the three tasks are caught in the middle, from the outside:

- the e-mail: the SMTP server holds the client at `MAIL FROM` (trickling `250-` lines so
  the client never times out): the outbox key is leased, nothing has been accepted;
- the fraud analysis and the export: the test holds SQLite's write lock, so both block on
  their INSERT (the export has already renamed its file into EXPORT_DIR by then).

Then the first worker stops consuming (`cancel_consumer`), all its pool children are
SIGKILLed, the locks are released and a second worker is started.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from banktasks_testing import wait_for
from core.default_plugins.seed import seed
from tests.reliability.helpers import (
    alerts,
    duplicates,
    exports,
    node_name,
    outbox,
    outbox_settled,
    result_meta,
    sha256,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOW = datetime(2024, 6, 1, tzinfo=UTC)
QUEUES = ["fraud", "export", "notifications"]


def test_pool_children_killed_mid_task(e2e, stalling_smtp, figures):
    e2e.set(
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(stalling_smtp.port),
        SMTP_TIMEOUT="1",  # lease of a delivery attempt: 60 s + 10 x SMTP_TIMEOUT = 70 s
        EXPORT_SUBMIT_LIMIT_PER_MINUTE="0",
    )
    app = e2e.app()
    planted = seed(app.runtime.db, users=40, transactions=1500, seed_value=11, now=NOW)
    expected_alerts = (
        len(planted.large_transactions)
        + len(planted.structuring_accounts)
        + len(planted.velocity_accounts)
    )
    export_dir = Path(e2e.env["BANKTASKS_VAR_DIR"]) / "exports"
    first = e2e.start_worker(queues=QUEUES, concurrency=3)

    # 1. An e-mail whose delivery is held at MAIL FROM (the key is leased, nothing accepted).
    stalling_smtp.stall_next = 1
    mail = app.tasks["notifications.send_email_notification"].delay(
        user_id=1, subject="Statement ready", message="Your statement is ready."
    )
    assert stalling_smtp.holding.wait(30), first.log()[-3000:]

    # 2. Hold SQLite's write lock: the analysis and the export block on their INSERT.
    lock = sqlite3.connect(app.runtime.db.engine.url.database, isolation_level=None, timeout=1)
    lock.execute("BEGIN IMMEDIATE")
    try:
        fraud = app.tasks["fraud.analyze_fraud_patterns"].delay(
            since=(NOW - timedelta(days=31)).isoformat(), until=NOW.isoformat()
        )
        export = app.tasks["export.export_transaction_data"].delay(
            user_id=1, start_date="2024-05-01", end_date="2024-05-31"
        )
        wait_for(lambda: list(export_dir.glob("transactions-*")), 30, "the export file")
        wait_for(lambda: fraud.state == "STARTED", 30, "the analysis to start")
        time.sleep(1.0)  # the analysis reads ~1,500 rows in milliseconds, then waits on the lock
        for result in (mail, fraud, export):
            assert result.state == "STARTED", (result, result.state)

        # 3. The first worker stops taking messages; its pool children die mid-task.
        first_node = node_name(first)
        for queue in QUEUES:
            replies = app.control.cancel_consumer(
                queue, destination=[first_node], reply=True, timeout=5
            )
            assert replies, f"the first worker did not stop consuming {queue}"
        children = first.children()
        assert len(children) == 3, children
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        lock.rollback()
        lock.close()
        stalling_smtp.release.set()

    wait_for(lambda: first.log().count("WorkerLostError") >= 3, 30, "the lost-worker reports")
    assert first.proc is not None and first.proc.poll() is None  # the main process survived

    # 4. A second worker picks the requeued messages up and finishes them.
    second = e2e.start_worker(queues=QUEUES, concurrency=2)
    fraud_result = fraud.get(timeout=90)
    export_result = export.get(timeout=90)
    mail_result = mail.get(timeout=150)  # waits for the dead attempt's lease (70 s)
    recovered_after = round(time.monotonic() - killed_at, 1)
    wait_for(lambda: outbox_settled(app), 120, "the fraud and export e-mails")

    metas = result_meta(app, [fraud.id, export.id, mail.id])
    assert {m["worker"] for m in metas.values()} == {node_name(second)}

    # Exactly one set of alerts.
    stored = alerts(app)
    assert fraud_result["alerts_created"] == expected_alerts == len(stored)
    assert duplicates([(a.rule, a.dedup_key) for a in stored]) == 0

    # Exactly one export row, whose file is there and matches.
    records = exports(app)
    assert len(records) == 1
    assert export_result["export_id"] == records[0].id and not export_result["duplicate"]
    assert sha256(records[0].path) == records[0].sha256
    leftovers = sorted(
        p.name for p in export_dir.iterdir() if p.is_file() and str(p) != records[0].path
    )

    # Exactly one message per notification at the SMTP server.
    entries = outbox(app)
    assert all(e.status == "sent" for e in entries), [(e.key, e.status) for e in entries]
    ids = stalling_smtp.message_ids()
    assert duplicates(ids) == 0
    assert sorted(ids) == sorted(e.message_id for e in entries)
    assert mail_result["status"] == "sent" and ids.count(mail_result["message_id"]) == 1
    mail_entry = next(e for e in entries if e.message_id == mail_result["message_id"])

    figures.update(
        scenario="1. worker pool children SIGKILLed mid-task",
        injected=(
            "SIGKILL of all 3 pool children of worker 1 while a fraud analysis and an export "
            "waited on the SQLite write lock and an e-mail was held at MAIL FROM"
        ),
        tasks_sent=3,
        tasks_completed=sum(1 for m in metas.values() if m["status"] == "SUCCESS"),
        completed_on=node_name(second).split("@")[0] + " (the second worker)",
        duplicates=duplicates([(a.rule, a.dedup_key) for a in stored])
        + (len(records) - 1)
        + duplicates(ids),
        lost=3 - sum(1 for m in metas.values() if m["status"] == "SUCCESS"),
        alerts=len(stored),
        alerts_expected=expected_alerts,
        export_rows=len(records),
        export_leftover_files=leftovers,
        emails_at_server=len(ids),
        outbox_rows=len(entries),
        smtp_mail_commands=stalling_smtp.mails,
        held_email_attempts=mail_entry.attempts,
        seconds_until_all_done=recovered_after,
    )
