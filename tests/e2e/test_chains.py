"""docs/chains.md against a real worker: how the built-in tasks compose in Celery's chain,
group and chord, what a failing step does, and the end-of-day close of
examples/workflows/end_of_day.py. The examples run as printed in the page."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord, group
from celery.exceptions import ChordError
from celery.result import GroupResult
from sqlalchemy import select

from banktasks_testing import make_transaction, seed_data, wait_for
from core import SubmissionRateLimited, TaskArgumentError
from core.db import utcnow
from core.default_plugins.deadletters import INVALID, PERMANENT, FailedTask
from core.models import Account
from examples.workflows.end_of_day import end_of_day
from plugins.fraud import FraudAlert

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "chains.md"
EXAMPLE = "examples/workflows/end_of_day.py"
JANUARY = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
FRAUD = "fraud.analyze_fraud_patterns"
HEALTH = "health.system_health_check"
EMAIL = "notifications.send_email_notification"
EXPORT = "export.export_transaction_data"


def doc_blocks(heading: str) -> list[str]:
    """The python blocks of the docs/chains.md section under `heading` (up to the next one)."""
    text = DOC.read_text()
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run_doc(heading: str, index: int = 0) -> dict[str, Any]:
    """Run one example of the page as printed; return the names it defined."""
    namespace: dict[str, Any] = {"__name__": "chains_doc_example"}
    exec(doc_blocks(heading)[index], namespace)
    return namespace


def dead_letters(app: Any) -> list[FailedTask]:
    with app.runtime.db.session() as session:
        return list(session.scalars(select(FailedTask).order_by(FailedTask.id)))


def alerts(app: Any) -> list[FraudAlert]:
    with app.runtime.db.session() as session:
        return list(session.scalars(select(FraudAlert).order_by(FraudAlert.id)))


def outbox(e2e: Any) -> dict[Path, Message]:
    """The e-mails the file channel wrote, by file."""
    folder = Path(e2e.env["BANKTASKS_VAR_DIR"]) / "outbox"
    return {p: message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))}


def mails(e2e: Any) -> list[Message]:
    return list(outbox(e2e).values())


def subjects(e2e: Any) -> list[str]:
    return [str(m["Subject"]) for m in mails(e2e)]


@pytest.fixture
def january(e2e):
    """Seeded data up to 2024-02-01 (the page analyses January 2024) and a worker."""
    app = e2e.app()
    seed_data(app.runtime.db, users=5, transactions=300, seed_value=3, now=JANUARY[1])
    e2e.start_worker(concurrency=2)
    return app


def test_si_steps_run_in_order_and_a_group_returns_a_list(e2e, january):
    checked = run_doc("## `.si()`: a step that ignores the previous result")["checked"]
    assert checked.get(timeout=30)["status"] == "sent"
    assert checked.parent.state == "SUCCESS"
    assert checked.parent.result["status"] in {"ok", "degraded", "failing"}
    health_done = checked.parent.date_done
    assert checked.date_done >= health_done  # the e-mail step ran after the check
    mail = next(m for m in mails(e2e) if m["Subject"] == "Health checked")
    assert mail["To"] == "user1@example.com"

    fraud_result, health_result = run_doc("## Groups")["both"].get(timeout=30)
    assert fraud_result["since"].startswith("2024-01-01") and fraud_result["scanned"] > 0
    assert set(health_result) >= {"status", "checks", "checked_at"}
    assert dead_letters(january) == []


def test_s_into_a_task_that_cannot_take_the_result_fails_as_itself(e2e, january):
    mismatch = run_doc("## `.s()`: a step that takes the previous result")["mismatch"]
    with pytest.raises(TaskArgumentError, match="too many positional arguments"):
        mismatch.get(timeout=30)
    analysis = mismatch.parent
    # The analysis did its work and keeps its result; the step that did not fit failed.
    assert (analysis.name, analysis.state) == (FRAUD, "SUCCESS")
    assert analysis.result["since"].startswith("2024-01-01")
    assert alerts(january)
    [letter] = wait_for(lambda: dead_letters(january), 10, "a dead letter")
    assert (letter.task_name, letter.task_id, letter.reason) == (HEALTH, mismatch.id, INVALID)
    assert letter.error.startswith("health.system_health_check: too many positional arguments")
    assert mismatch.state == "FAILURE"

    # The page's table of errors, one chain each after the same analysis.
    since, until = JANUARY
    tasks = january.tasks
    cases = [
        (tasks[EMAIL].s(subject="s", message="m"), "argument 'user_id'={'since': "),
        (tasks[EMAIL].s(user_id=1, subject="s", message="m"), "multiple values for argument"),
        (tasks["fraud.combine_fraud_slices"].s(), "Input should be a valid list"),
    ]
    for step, error in cases:
        result = chain(tasks[FRAUD].si(since=since, until=until), step).apply_async()
        with pytest.raises(TaskArgumentError, match=re.escape(error)):
            result.get(timeout=30)
        assert result.parent.state == "SUCCESS"
        assert error in DOC.read_text().replace("...", "")  # the page shows it
    assert "s" not in subjects(e2e)
    letters = wait_for(lambda: len(dead_letters(january)) == 4 and dead_letters(january), 10)
    assert [r.task_name for r in letters[1:]] == [EMAIL, EMAIL, "fraud.combine_fraud_slices"]


def test_chord_with_combine_fraud_slices_adds_up(e2e, january):
    total = run_doc("## Chords: `combine_fraud_slices` adds fraud analyses up")["total"]
    assert total["chunks"] == 4
    assert total["alerts_created"] == len(alerts(january)) > 0
    since, until = JANUARY[0], JANUARY[0] + timedelta(weeks=4)
    whole = january.tasks[FRAUD].delay(since=since, until=until).get(timeout=30)
    assert (total["since"], total["until"]) == (whole["since"], whole["until"])
    assert (total["scanned"], total["findings"]) == (whole["scanned"], whole["findings"])
    assert whole["alerts_created"] == 0  # the chord stored every alert already

    # A chunked analysis may be a member of a chord header: its result is the sum.
    middle = since + timedelta(weeks=2)
    mixed = chord(
        [
            january.tasks["fraud.analyze_fraud_patterns_chunked"].si(
                since=since, until=middle, chunks=2
            ),
            january.tasks[FRAUD].si(since=middle, until=until),
        ],
        january.tasks["fraud.combine_fraud_slices"].s(),
    ).apply_async()
    combined = mixed.get(timeout=60)
    assert (combined["scanned"], combined["findings"]) == (whole["scanned"], whole["findings"])


def test_a_failing_step_stops_the_chain(e2e, january):
    stopped = run_doc("## When a step fails")["stopped"]
    with pytest.raises(TaskArgumentError, match="user_id=999: no such user"):
        stopped.get(timeout=30)
    export, health = stopped.parent, stopped.parent.parent
    assert (export.name, export.state) == (EXPORT, "FAILURE")
    assert (health.name, health.state) == (HEALTH, "SUCCESS")
    assert stopped.state == "FAILURE"
    [letter] = wait_for(lambda: dead_letters(january), 10, "a dead letter")
    assert (letter.task_name, letter.task_id, letter.reason) == (EXPORT, export.id, INVALID)
    time.sleep(0.5)
    assert "Export sent" not in subjects(e2e)
    assert len(dead_letters(january)) == 1  # the step after it is no dead letter

    # In a chord, a failing header member stops the callback and what follows it.
    day = date(2024, 1, 31)
    close = end_of_day(day, statement_users=[1, 999], app=january).apply_async()
    with pytest.raises(TaskArgumentError, match="user_id=999: no such user"):
        close.get(timeout=30)
    wait_for(lambda: close.state == "FAILURE", 10, "the notice to be marked failed")
    assert isinstance(close.result, ChordError) and "Dependency" in str(close.result)
    assert f"End of day {day} closed" not in subjects(e2e)
    letters = wait_for(lambda: len(dead_letters(january)) == 2 and dead_letters(january), 10, "2")
    assert [r.task_name for r in letters] == [EXPORT, EXPORT]


def test_a_step_that_retries_holds_the_chain_then_goes_on(e2e, smtp_server):
    e2e.set(
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_server.port),
        NOTIFICATIONS_RETRY_BACKOFF="1",
    )
    app = e2e.app()
    seed_data(app.runtime.db, users=2, transactions=20, seed_value=3, now=JANUARY[1])
    e2e.start_worker(concurrency=2)
    smtp_server.reply = "451 try again later"
    result = chain(
        app.tasks[EMAIL].si(user_id=1, subject="Retried", message="m"), app.tasks[HEALTH].si()
    ).apply_async()
    wait_for(lambda: smtp_server.attempts >= 1, 30, "a refused attempt")
    smtp_server.reply = None
    assert result.get(timeout=30)["status"] in {"ok", "degraded", "failing"}
    assert result.parent.result["status"] == "sent" and smtp_server.attempts >= 2
    assert [m["Subject"] for m in smtp_server.messages] == ["Retried"]
    assert dead_letters(app) == []


def test_immutable_steps_are_checked_when_built(e2e, january, capsys):
    tasks = january.tasks
    before = len(january.redis_client().keys("*"))
    # A typo in a later .si() raises while the chain is built: nothing is sent.
    with pytest.raises(TaskArgumentError, match="missing a required argument: 'subject'"):
        chain(tasks[HEALTH].si(), tasks[EMAIL].si(user_id=1, subjet="Hi", message="..."))
    # So does a bad group member, before the members before it are sent.
    with pytest.raises(TaskArgumentError, match="user_id"):
        group(
            tasks[EMAIL].si(user_id=1, subject="Never sent", message="m"),
            tasks[EMAIL].si(user_id="me", subject="Never", message="m"),
        )
    # And a chord callback that does not fit.
    with pytest.raises(TaskArgumentError, match="user_id"):
        chord([tasks[HEALTH].si()], tasks[EMAIL].si(user_id="me", subject="s", message="m"))
    assert len(january.redis_client().keys("*")) == before  # no message, no result
    time.sleep(0.5)
    assert "Never sent" not in subjects(e2e)
    assert dead_letters(january) == []

    run_doc("## Arguments are checked when a step is built")
    assert "missing a required argument: 'subject'" in capsys.readouterr().out


def test_a_submission_limit_in_a_later_step_fails_the_step_before(e2e):
    e2e.set(EXPORT_SUBMIT_LIMIT_PER_MINUTE="1")
    app = e2e.app()
    seed_data(app.runtime.db, users=2, transactions=20, seed_value=3, now=JANUARY[1])
    e2e.start_worker(concurrency=2)
    export = app.tasks[EXPORT].si(user_id=2, start_date="2024-01-01", end_date="2024-01-31")
    assert export.apply_async().get(timeout=30)["rows"] >= 0
    limited = chain(app.tasks[HEALTH].si(), export).apply_async()
    with pytest.raises(SubmissionRateLimited):
        limited.get(timeout=30)
    [letter] = wait_for(lambda: dead_letters(app), 10, "a dead letter")
    assert (letter.task_name, letter.reason) == (HEALTH, PERMANENT)


def utc(moment: datetime) -> datetime:
    """A result's `date_done` (naive UTC) as an aware datetime."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_to_midnight() -> float:
    now = utcnow()
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - now).total_seconds()


def test_end_of_day_close_runs_to_the_end(e2e):
    if seconds_to_midnight() < 60:  # the close is of one UTC day: don't straddle two
        time.sleep(seconds_to_midnight() + 1)
    app = e2e.app()
    seed_data(app.runtime.db, users=5, transactions=300, seed_value=3, now=utcnow())
    with app.runtime.db.session() as session:
        planted = make_transaction(
            session, session.get(Account, 1), amount="25000.00", kind="transfer"
        ).id
    e2e.start_worker(concurrency=2)
    assert f'--8<-- "{EXAMPLE}"' in DOC.read_text()  # the page shows the module itself

    close = run_doc("## An end-of-day close", 1)["close"]  # the page's usage, as printed
    notice = close.get(timeout=60)
    today = utcnow().date()
    assert notice["status"] == "sent"

    # 1. fraud: the planted transfer raised an alert
    opened = alerts(app)
    assert planted in {a.transaction_id for a in opened}
    # 2. exports: one file per statement user, with that user's transactions of the day
    var = Path(e2e.env["BANKTASKS_VAR_DIR"])
    rows = {}
    for user in (1, 2):
        [path] = (var / "exports").glob(f"transactions-u{user}-{today}-{today}-*.csv")
        header, *rows[user] = path.read_text().splitlines()
        assert header.startswith("transaction_id,")
    assert str(planted) in {row.split(",")[0] for row in rows[1]}
    # 3. the report ran after the analysis and the exports had finished, so its fraud
    # section counts the alerts the analysis opened
    report = json.loads((var / "reports" / f"daily-report-{today}.json").read_text())
    assert report["sections"]["fraud"]["alerts_opened"] == len(opened)
    generated = datetime.fromisoformat(report["generated_at"])
    header = close.parent
    while not isinstance(header, GroupResult):
        header = header.parent
    assert [r.name for r in header.results] == [FRAUD, EXPORT, EXPORT]
    assert all(generated >= utc(r.date_done) for r in header.results)
    for ext in ("csv", "html"):
        assert (var / "reports" / f"daily-report-{today}.{ext}").exists()
    # 4. the notice, once, after the report
    [(path, mail)] = [
        (p, m) for p, m in outbox(e2e).items() if m["Subject"] == f"End of day {today} closed"
    ]
    assert mail["To"] == "admin@banking.com" and mail["Message-ID"] == notice["message_id"]
    assert datetime.fromtimestamp(path.stat().st_mtime, UTC) >= generated
    ready = "Your transaction export is ready"
    wait_for(lambda: subjects(e2e).count(ready) == 2, 30, "both users told of their export")
    wait_for(lambda: f"Daily report {today}" in subjects(e2e), 30, "the report's summary")
    # 5. one admin e-mail per case holding an alert at or above FRAUD_ALERT_MIN_SEVERITY
    # (high): one per such customer, not one per alert
    with app.runtime.db.session() as session:
        accounts = {a.account_id for a in opened if a.severity in ("high", "critical")}
        customers = set(session.scalars(select(Account.user_id).where(Account.id.in_(accounts))))
    wait_for(
        lambda: sum(t.startswith("[fraud] case #") for t in subjects(e2e)) == len(customers),
        30,
        "one e-mail per customer's case",
    )

    # Run again: nothing new to alert, the notice once per day and recipient.
    assert end_of_day(today, app=app).apply_async().get(timeout=60)["status"] == "duplicate"
    to_user = end_of_day(today, notify_user_id=3, app=app).apply_async().get(timeout=60)
    assert to_user["status"] == "sent"
    notices = [m["To"] for m in mails(e2e) if m["Subject"] == f"End of day {today} closed"]
    assert sorted(notices) == ["admin@banking.com", "user3@example.com"]
    assert len(alerts(app)) == len(opened)
    assert dead_letters(app) == []
