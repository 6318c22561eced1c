"""Fault 4: the SMTP server is down, then answers 5xx.

- Down (connection refused): each e-mail retries with exponential backoff and is delivered
  exactly once when the server is back.
- 5xx (the server refuses the message for good): each e-mail fails after its first attempt,
  the outbox row says why, nothing retries (no retry storm at the server), and the failure
  is in the dead-letter table.
"""

from __future__ import annotations

import time

import pytest

from banktasks_testing import wait_for
from core.default_plugins.seed import seed
from tests.reliability.helpers import dead_letters, duplicates, outbox, result_meta, retry_waits

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EMAILS = 8


def smtp_env(e2e, smtp) -> None:
    e2e.set(
        BANKTASKS_PLUGINS="notifications",
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        SMTP_TIMEOUT="2",
        NOTIFICATIONS_RETRY_BACKOFF="2",  # waits of 0-2, 0-4, 0-8, 0-16, 0-32 s (full jitter)
    )


def send(app, count: int, tag: str) -> list:
    task = app.tasks["notifications.send_email_notification"]
    return [
        task.delay(user_id=1 + i % 5, subject=f"{tag} {i}", message=f"Message {i}.")
        for i in range(count)
    ]


def test_smtp_down_then_back(e2e, smtp_server, figures):
    smtp_env(e2e, smtp_server)
    app = e2e.app()
    seed(app.runtime.db, users=5, transactions=10, seed_value=1)
    smtp_server.stop()  # connections are refused from now on
    stopped_at = time.monotonic()
    worker = e2e.start_worker(concurrency=2)
    results = send(app, EMAILS, "Outage")

    def all_failed() -> bool:
        entries = outbox(app)
        return len(entries) == EMAILS and all(e.attempts >= 1 and e.error for e in entries)

    wait_for(all_failed, 60, "every e-mail to fail")
    # Down for 2 s more: the e-mails retry meanwhile. (Longer, and an e-mail whose jittered
    # waits all come out short could use its 5 retries up before the server is back:
    # about 1 in 2,000 runs for 2 s; the five waits add up to 31 s on average, 62 s at most.)
    time.sleep(2.0)
    down_errors = {e.error.split(":")[0] for e in outbox(app)}
    smtp_server.start()  # the same port
    outage = round(time.monotonic() - stopped_at, 1)
    sent = [r.get(timeout=120) for r in results]
    delivered_after = round(time.monotonic() - stopped_at, 1)

    entries = outbox(app)
    ids = [str(m["Message-ID"]) for m in smtp_server.messages]
    assert all(s["status"] == "sent" for s in sent)
    assert all(e.status == "sent" and e.error is None for e in entries)
    assert sorted(ids) == sorted(e.message_id for e in entries)  # exactly once each
    assert duplicates(ids) == 0 and smtp_server.attempts == EMAILS
    metas = result_meta(app, [r.id for r in results])
    waits = retry_waits(worker.log())
    assert len(waits) == sum(m["retries"] for m in metas.values())  # one logged wait per retry
    attempts = sorted(e.attempts for e in entries)
    figures.update(
        scenario="4a. SMTP server down",
        injected=f"SMTP server stopped (connection refused) for {outage} s",
        tasks_sent=EMAILS,
        tasks_completed=sum(1 for s in sent if s["status"] == "sent"),
        duplicates=duplicates(ids),
        lost=EMAILS - len(set(ids)),
        attempts_per_email=attempts,
        retry_waits_s=sorted(waits),
        errors_while_down=sorted(down_errors),
        messages_at_server=len(ids),
        seconds_until_all_delivered=delivered_after,
    )


def test_smtp_5xx_fails_once_without_retry_storm(e2e, smtp_server, figures):
    smtp_env(e2e, smtp_server)
    smtp_server.reply = "550 5.1.1 mailbox unavailable"
    app = e2e.app()
    seed(app.runtime.db, users=5, transactions=10, seed_value=1)
    e2e.start_worker(concurrency=2)
    results = send(app, EMAILS, "Refused")
    for result in results:
        wait_for(result.ready, 60, "the e-mail to fail")
        assert result.failed()
    time.sleep(5)  # long enough for any retry (first wait 0-1 s) to have reached the server
    entries = outbox(app)
    assert len(entries) == EMAILS
    assert all(e.status == "failed" and e.attempts == 1 for e in entries)
    assert all("550" in e.error and "mailbox unavailable" in e.error for e in entries)
    assert smtp_server.attempts == EMAILS and smtp_server.messages == []  # one try each
    letters = {d.task_id: d for d in dead_letters(app)}
    assert set(letters) == {r.id for r in results}
    assert {d.reason for d in letters.values()} == {"permanent error"}
    figures.update(
        scenario="4b. SMTP server answers 5xx",
        injected="SMTP server answering `550 5.1.1 mailbox unavailable` to DATA",
        tasks_sent=EMAILS,
        tasks_completed=0,
        failed_with_reason=len(entries),
        duplicates=0,
        lost=0,
        attempts_at_server=smtp_server.attempts,
        outbox_error=entries[0].error,
        dead_letters=len(letters),
    )
