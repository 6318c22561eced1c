"""Fault 5: the same message is delivered twice (same task id, same idempotency key) to two
workers at once: it runs twice, and has one effect — one e-mail, one export, one report.

This is what a redelivery looks like from a task's point of view (a worker lost after the
task did its work, a visibility timeout that expired, a client that re-sent its request),
so each effectful task must be idempotent per task id / idempotency key.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from banktasks_testing import wait_for
from core.default_plugins.seed import seed
from plugins.reports.models import StoredReport
from tests.reliability.helpers import (
    duplicates,
    exports,
    outbox,
    outbox_settled,
    result_meta,
    rows,
    sha256,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOTIFICATIONS = 6
EXPORTS = 6
REPORT_DAYS = ["2024-05-28", "2024-05-29", "2024-05-30"]


def queued_or_held(app) -> int:
    """Messages still queued, or held unacknowledged (e.g. waiting for a retry)."""
    client = app.redis_client()
    return client.llen("notifications") + client.hlen("unacked")


def test_same_message_twice_has_one_effect(e2e, smtp_server, figures):
    e2e.set(
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_server.port),
        # A copy that finds its e-mail being sent by the other copy comes back when that
        # delivery's lease has expired (60 s + 10 x SMTP_TIMEOUT), to find it sent.
        SMTP_TIMEOUT="1",
        EXPORT_SUBMIT_LIMIT_PER_MINUTE="0",
        BANKTASKS_PLUGINS="notifications,export,reports",
    )
    app = e2e.app()
    seed(app.runtime.db, users=EXPORTS, transactions=600, seed_value=9)
    notify = app.tasks["notifications.send_email_notification"]
    export = app.tasks["export.export_transaction_data"]
    report = app.tasks["reports.generate_daily_reports"]
    messages: list[tuple[object, dict]] = []
    for i in range(NOTIFICATIONS):
        kwargs = {
            "user_id": 1 + i,
            "subject": f"Payment {i} received",
            "message": "Thank you.",
            "idempotency_key": f"payment-{i}",
        }
        messages.append((notify, kwargs))
    for user in range(1, EXPORTS + 1):
        messages.append(
            (export, {"user_id": user, "start_date": "2024-01-01", "end_date": "2024-12-31"})
        )
    for day in REPORT_DAYS:
        messages.append((report, {"report_date": day}))

    # Two workers with two processes each; two identical messages (same task id, same
    # arguments) per task, back to back: the copies run at the same time or one after the
    # other, on one worker or both, whichever comes.
    workers = [e2e.start_worker(concurrency=2) for _ in range(2)]
    ids = []
    for task, kwargs in messages:
        task_id = str(uuid.uuid4())
        ids.append(task_id)
        for _ in range(2):
            task.apply_async(kwargs=kwargs, task_id=task_id)

    def runs() -> Counter[str]:
        logs = "".join(w.log() for w in workers)
        return Counter(i for i in ids for line in logs.splitlines() if f"[{i}] succeeded" in line)

    started = time.monotonic()
    wait_for(lambda: all(runs()[i] == 2 for i in ids), 150, "both copies of every message to run")
    wait_for(lambda: outbox_settled(app) and len(outbox(app)) == len(ids), 150, "the e-mails")
    wait_for(lambda: not queued_or_held(app), 150, "every e-mail copy to be done")
    settled_after = round(time.monotonic() - started, 1)
    waited = sum("right now" in line for w in workers for line in w.log().splitlines())
    metas = result_meta(app, ids)
    assert all(m["status"] == "SUCCESS" for m in metas.values())

    # One e-mail per key at the server: the user e-mails, "export ready" and the reports.
    entries = outbox(app)
    keys = sorted(e.idempotency_key for e in entries)
    assert len(keys) == NOTIFICATIONS + EXPORTS + len(REPORT_DAYS) == len(set(keys))
    at_server = [str(m["Message-ID"]) for m in smtp_server.messages]
    assert duplicates(at_server) == 0
    assert sorted(at_server) == sorted(e.message_id for e in entries)
    # One export per task id, and one file per export.
    records = exports(app)
    assert len(records) == EXPORTS and duplicates([r.idempotency_key for r in records]) == 0
    export_files = sorted(p for p in (Path(e2e.env["BANKTASKS_VAR_DIR"]) / "exports").iterdir())
    assert [str(p) for p in export_files] == sorted(r.path for r in records)
    assert all(sha256(r.path) == r.sha256 for r in records)
    # One report row per day (the second run replaced the first: `runs` counts them).
    stored = rows(app, StoredReport)
    assert sorted(str(r.report_date) for r in stored) == REPORT_DAYS
    kinds = Counter(metas[i]["name"].split(".")[0] for i in ids)
    split = sum(1 for i in ids if all(f"[{i}] succeeded" in w.log() for w in workers))
    figures.update(
        scenario="5. duplicate delivery",
        injected=(
            "every message published twice with the same task id and arguments "
            f"({kinds['notifications']} e-mails with an idempotency key, {kinds['export']} "
            f"exports, {kinds['reports']} daily reports), consumed by 2 workers x 2 processes"
        ),
        tasks_sent=2 * len(ids),
        distinct_tasks=len(ids),
        runs=sum(runs().values()),
        pairs_run_by_both_workers=split,
        tasks_completed=sum(1 for m in metas.values() if m["status"] == "SUCCESS"),
        duplicates=duplicates(at_server) + (len(records) - EXPORTS) + (len(stored) - 3),
        lost=len(ids) - sum(1 for m in metas.values() if m["status"] == "SUCCESS"),
        emails_at_server=len(at_server),
        export_rows=len(records),
        export_files=len(export_files),
        report_rows=len(stored),
        report_runs=sorted(r.runs for r in stored),
        email_copies_that_waited_for_the_lease=waited,
        seconds_until_settled=settled_after,
    )
