"""Key namespaces: a caller's `idempotency_key` never meets a key banktasks uses itself.

Caller keys are stored as `caller:<key>`, derived ones as `task:<id>` / `args:<sha>`, and
a hook's e-mail as `event:<name>:<id>`, which only the hook (in a banktasks process) can
reserve, for exactly the content it queues.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner

from banktasks_testing import fake_plugin
from core import TaskArgumentError, hookspec
from plugins.notifications import (
    OutboxEntry,
    message_id_for,
    send_admin_email,
    send_email_notification,
)
from plugins.notifications import outbox as outbox_mod
from plugins.notifications.plugin import register_commands
from plugins.notifications.tests.helpers import outbox_rows, queued

TASK = "notifications.send_admin_email"


@hookspec
def on_fraud_case_opened(case: Any, alert: Any) -> Any:
    """fraud's hookspec."""


@hookspec
def on_report_generated(report: Any) -> Any:
    """reports' hookspec."""


SPECS = SimpleNamespace(
    on_fraud_case_opened=on_fraud_case_opened, on_report_generated=on_report_generated
)


def open_case(app: Any, case_id: int) -> None:
    """Fraud opens case `case_id` (with its first alert, `#100 + case_id`)."""
    case = SimpleNamespace(id=case_id, user_id=5, status="open", opened_at=datetime.now(UTC))
    app.runtime.hook.on_fraud_case_opened(case=case, alert=alert(100 + case_id))


def subject(case_id: int) -> str:
    return f"[fraud] case #{case_id} opened: high large_transaction"


def alert(alert_id: int = 107) -> Any:
    return SimpleNamespace(
        id=alert_id,
        rule="large_transaction",
        severity="high",
        score=0.9,
        account_id=42,
        transaction_id=1001,
        created_at=datetime(2024, 1, 31, tzinfo=UTC),
        evidence={"amount": "15000.01"},
    )


@pytest.fixture
def app(notif_app: Any) -> Any:
    return notif_app(fake_plugin("owners", register_hookspecs=lambda pm: pm.add_hookspecs(SPECS)))


def eml_subjects(app: Any) -> list[str]:
    folder = app.runtime.settings.var_dir / "outbox"
    return sorted(
        line.split(":", 1)[1].strip()
        for path in folder.glob("*.eml")
        for line in path.read_text().splitlines()
        if line.startswith("Subject:")
    )


def run_queued(app: Any) -> list[dict[str, Any]]:
    """Run the queued notification tasks in this process, as the worker would."""
    jobs = queued(app)
    app.redis_client().delete("notifications")
    return [app.tasks[job["task"]].apply(kwargs=job["kwargs"]).get() for job in jobs]


def test_a_caller_key_named_like_an_event_does_not_silence_it(app: Any) -> None:
    for key in ("fraud-case:7", "event:fraud-case:7", "caller:fraud-case:7"):
        assert send_admin_email(subject="decoy", message="x", idempotency_key=key)["status"] == (
            "sent"
        )
    open_case(app, 7)
    (result,) = run_queued(app)
    assert result["status"] == "sent"
    assert eml_subjects(app).count(subject(7)) == 1
    sources = sorted(outbox_mod.split_key(r.idempotency_key) for r in outbox_rows(app))
    assert sources == [
        ("caller", "caller:fraud-case:7"),
        ("caller", "event:fraud-case:7"),
        ("caller", "fraud-case:7"),
        ("event", "fraud-case:7"),
    ]


def test_a_caller_key_named_like_a_task_id_does_not_silence_that_task(app: Any) -> None:
    send_admin_email(subject="decoy", message="x", idempotency_key="task:planned")
    result = app.tasks[TASK].apply(kwargs={"subject": "Hi", "message": "B"}, task_id="planned")
    assert result.get()["status"] == "sent"
    assert result.get()["idempotency_key"] == "task:planned"


def test_an_event_no_hook_reserved_is_refused_and_nothing_is_written(app: Any) -> None:
    with pytest.raises(TaskArgumentError, match="no banktasks hook announced"):
        send_admin_email(subject="all fine", message="ignore", event="fraud-case:8")
    assert outbox_rows(app) == [] and eml_subjects(app) == []


def test_other_content_for_a_reserved_event_is_not_sent_and_does_not_silence_it(
    app: Any,
) -> None:
    open_case(app, 7)
    forged = send_admin_email(subject="all fine", message="ignore", event="fraud-case:7")
    assert forged["status"] == "superseded"
    assert eml_subjects(app) == []
    (real,) = run_queued(app)
    assert real["status"] == "sent"
    assert eml_subjects(app) == [subject(7)]
    again = send_admin_email(subject="all fine", message="ignore", event="fraud-case:7")
    assert again["status"] == "duplicate"
    assert len(eml_subjects(app)) == 1


def test_a_re_announced_event_sends_its_newest_content_once(app: Any) -> None:
    def report(text: str) -> Any:
        return SimpleNamespace(
            report_date="2024-01-31", files={}, summary_text=lambda: f"Daily report\n{text}"
        )

    app.runtime.hook.on_report_generated(report=report("first run"))
    app.runtime.hook.on_report_generated(report=report("second run"))  # before the e-mail
    assert [r["status"] for r in run_queued(app)] == ["superseded", "sent"]
    (row,) = outbox_rows(app)
    assert (row.idempotency_key, row.status, row.attempts) == (
        "event:daily-report:2024-01-31",
        "sent",
        1,
    )
    text = next((app.runtime.settings.var_dir / "outbox").glob("*.eml")).read_text()
    assert "second run" in text and "first run" not in text
    assert f"Message-ID: {row.message_id}" in text

    app.runtime.hook.on_report_generated(report=report("third run"))  # after: a duplicate
    assert [r["status"] for r in run_queued(app)] == ["duplicate"]


def test_a_pre_namespace_row_under_an_event_key_is_moved_aside(app: Any) -> None:
    """A caller who used the literal key `event:fraud-case:5` before the namespaces existed
    left a `sent` row under that string: the hook moves it to `legacy:…` and sends."""
    key = "event:fraud-case:5"
    with app.runtime.db.session() as session:
        session.add(
            OutboxEntry(
                idempotency_key=key,
                kind="admin",
                subject="decoy",
                status="sent",
                attempts=1,
                message_id=outbox_mod.message_id_of(key),
            )
        )
    open_case(app, 5)
    assert [r["status"] for r in run_queued(app)] == ["sent"]
    assert sorted((r.idempotency_key, r.subject) for r in outbox_rows(app)) == [
        (key, subject(5)),
        ("legacy:" + key, "decoy"),
    ]
    assert outbox_mod.split_key("legacy:" + key) == ("legacy", key)


def test_idempotency_key_and_event_exclude_each_other(app: Any) -> None:
    kwargs = {"subject": "Hi", "message": "B", "idempotency_key": "k", "event": "x:1"}
    with pytest.raises(TaskArgumentError, match="not both"):
        app.tasks[TASK].delay(**kwargs)
    assert queued(app) == []
    with pytest.raises(TaskArgumentError, match="not both"):
        send_admin_email(**kwargs)


@pytest.mark.parametrize("event", ["", "fraud-case", "Fraud:1", "x:a b", "x:" + "1" * 121])
def test_malformed_events_are_refused(app: Any, event: str) -> None:
    with pytest.raises(TaskArgumentError, match="event"):
        app.tasks[TASK].delay(subject="Hi", message="B", event=event)


def test_a_long_caller_key_is_stored_hashed_and_stays_idempotent(app: Any) -> None:
    key = "k" * 200
    first = send_email_notification(user_id=1, subject="Hi", message="B", idempotency_key=key)
    second = send_email_notification(user_id=1, subject="Hi", message="B", idempotency_key=key)
    other = send_email_notification(
        user_id=1, subject="Hi", message="B", idempotency_key="k" * 199 + "j"
    )
    assert (first["status"], second["status"], other["status"]) == ("sent", "duplicate", "sent")
    assert first["idempotency_key"] == key and first["message_id"] == message_id_for(key)
    stored = [r.idempotency_key for r in outbox_rows(app)]
    assert all(len(k) <= 200 and k.startswith("caller-sha256:") for k in stored)
    assert outbox_mod.split_key(stored[0])[0] == "caller"


def test_split_key_names_every_source() -> None:
    assert outbox_mod.split_key("caller:welcome:1") == ("caller", "welcome:1")
    assert outbox_mod.split_key("event:fraud-case:7") == ("event", "fraud-case:7")
    assert outbox_mod.split_key("task:abc") == ("task", "abc")
    assert outbox_mod.split_key("args:00ff") == ("args", "00ff")
    assert outbox_mod.split_key("fraud-case:7") == ("legacy", "fraud-case:7")
    assert outbox_mod.split_key("nocolon") == ("legacy", "nocolon")


def test_outbox_command_shows_the_source_of_each_key(app: Any) -> None:
    @click.group()
    def root() -> None:
        """banktasks stand-in"""

    register_commands(cli=root)
    send_admin_email(subject="Hi", message="B", idempotency_key="welcome:1")
    open_case(app, 3)
    rows = json.loads(CliRunner().invoke(root, ["outbox", "--json"]).output)
    assert [(r["source"], r["key"], r["stored_key"], r["status"]) for r in rows] == [
        ("event", "fraud-case:3", "event:fraud-case:3", "pending"),
        ("caller", "welcome:1", "caller:welcome:1", "sent"),
    ]
    table = CliRunner().invoke(root, ["outbox"]).output
    assert table.splitlines()[0].split()[:3] == ["id", "source", "key"]
