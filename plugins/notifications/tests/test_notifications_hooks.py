"""Hooks owned by reports, fraud and export: each reserves its event and queues the right task.

The owners are stood in for by a tiny plugin that declares the same hookspecs,
and the hook arguments are plain objects with the attributes the owners' hookspecs
document (no other plugin is imported). One test loads the real owners by
entry-point name, so pluggy checks our implementations against their hookspecs.
The queued messages are read back from the real Valkey queue.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from banktasks_testing import fake_plugin
from core import hookspec
from plugins.notifications import send_admin_email, send_email_notification
from plugins.notifications.tests.helpers import outbox_rows, queued


@hookspec
def on_report_generated(report: Any) -> Any:
    """reports' hookspec."""


@hookspec
def on_fraud_case_opened(case: Any, alert: Any) -> Any:
    """fraud's hookspec."""


@hookspec
def on_export_ready(export: Any) -> Any:
    """export's hookspec."""


OWNER_SPECS = SimpleNamespace(
    on_report_generated=on_report_generated,
    on_fraud_case_opened=on_fraud_case_opened,
    on_export_ready=on_export_ready,
)
"""Stands in for reports, fraud and export: only their hookspecs."""


@dataclass
class Report:
    report_date: date
    sections: dict[str, dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def summary_text(self) -> str:
        return f"Daily report {self.report_date}\ntransactions: 1234\nfraud alerts: 3 <&>"


@dataclass
class Alert:
    id: int = 7
    rule: str = "large_transaction"
    account_id: int = 42
    transaction_id: int | None = 1001
    severity: str = "high"
    score: float = 0.93
    status: str = "open"
    evidence: dict[str, Any] = field(
        default_factory=lambda: {
            "amount": "15000.01",
            "account_number": "400000000042",
            "iban": "DE89370400440532013000",
        }
    )
    created_at: datetime = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)
    resolved_at: datetime | None = None
    rule_version: str = "1"


def case(case_id: int = 3, user_id: int = 5) -> Any:
    """A new case as fraud passes it (a detached FraudCase row: only attributes are read)."""
    return SimpleNamespace(
        id=case_id,
        user_id=user_id,
        status="open",
        assignee=None,
        opened_at=datetime(2024, 1, 31, 12, 0, 1, tzinfo=UTC),
    )


@dataclass
class Export:
    id: int = 5
    user_id: int = 1
    format: str = "csv"
    path: str = "/srv/banktasks/var/exports/tx_1_20240101_20240131_3f9a.csv"
    file_name: str = "tx_1_20240101_20240131_3f9a.csv"
    rows: int = 31
    bytes: int = 2048
    sha256: str = "ab" * 32
    start_date: date = date(2024, 1, 1)
    end_date: date = date(2024, 1, 31)


@pytest.fixture
def app(notif_app: Any) -> Any:
    owners = fake_plugin("owners", register_hookspecs=lambda pm: pm.add_hookspecs(OWNER_SPECS))
    return notif_app(owners)


def eml(app: Any) -> list[email.message.EmailMessage]:
    folder = app.runtime.settings.var_dir / "outbox"
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def test_report_generated_queues_admin_email_with_the_summary(app: Any) -> None:
    report = Report(date(2024, 1, 31), {"totals": {"count": 1234}}, {"csv": "/x/r-2024-01-31.csv"})
    (answer,) = app.runtime.hook.on_report_generated(report=report)
    (job,) = queued(app)
    assert answer == {"queued": job["id"]}
    assert job["task"] == "notifications.send_admin_email"
    kwargs = job["kwargs"]
    assert kwargs["event"] == "daily-report:2024-01-31" and "idempotency_key" not in kwargs
    assert kwargs["subject"] == "Daily report 2024-01-31"
    assert kwargs["message"] == report.summary_text()
    assert "fraud alerts: 3 &lt;&amp;&gt;" in kwargs["html_message"]
    assert "r-2024-01-31.csv" in kwargs["html_message"] and "/x/" not in kwargs["html_message"]
    # The hook only reserves the event's row and queues; the worker sends.
    assert [(r.idempotency_key, r.status, r.attempts) for r in outbox_rows(app)] == [
        ("event:daily-report:2024-01-31", "pending", 0)
    ]
    assert eml(app) == []

    # What the worker will do with it: one e-mail to ADMIN_EMAIL, re-runs are duplicates.
    assert send_admin_email(**kwargs)["status"] == "sent"
    app.runtime.hook.on_report_generated(report=report)
    assert send_admin_email(**queued(app)[-1]["kwargs"])["status"] == "duplicate"
    (msg,) = eml(app)
    assert msg["To"] == "admin@banking.com"
    assert msg.get_content_type() == "multipart/alternative"


def test_a_new_fraud_case_queues_one_admin_email_about_its_opening_alert(app: Any) -> None:
    (answer,) = app.runtime.hook.on_fraud_case_opened(case=case(3, user_id=5), alert=Alert())
    (job,) = queued(app)
    assert answer == {"queued": job["id"]}
    assert job["task"] == "notifications.send_admin_email"
    kwargs = job["kwargs"]
    assert kwargs["event"] == "fraud-case:3" and "idempotency_key" not in kwargs
    assert kwargs["subject"] == "[fraud] case #3 opened: high large_transaction"
    text = kwargs["message"]
    for expected in (
        "Fraud case #3 opened",
        "customer (user) id: 5",
        "alert: #7",
        "rule: large_transaction (version 1)",
        "severity: high",
        "score: 0.93",
        "account id: 42",
        "transaction id: 1001",
        "Work it with: banktasks cases show 3",
    ):
        assert expected in text, expected
    assert "banktasks cases show 3" in kwargs["html_message"]
    assert [(r.idempotency_key, r.status) for r in outbox_rows(app)] == [
        ("event:fraud-case:3", "pending")
    ]


def test_the_case_email_carries_no_account_number_and_redacts_the_evidence(app: Any) -> None:
    alert = Alert(
        evidence={
            "amount": "15000.01",
            "account_number": "400000000042",
            "iban": "DE89370400440532013000",
            "counterparties": ["account 400000000099", "DE44500105175407324931"],
            "note": "from 400000000042 to user1@example.com",
        }
    )
    app.runtime.hook.on_fraud_case_opened(case=case(), alert=alert)
    (job,) = queued(app)
    kwargs = job["kwargs"]
    everything = kwargs["subject"] + kwargs["message"] + kwargs["html_message"]
    for secret in (
        "400000000042",
        "400000000099",
        "DE89370400440532013000",
        "DE44500105175407324931",
        "user1@example.com",
    ):
        assert secret not in everything, secret
    assert "15000.01" in kwargs["message"]  # amounts stay readable
    assert "****0042" in kwargs["message"]  # a masked number still tells accounts apart
    # What the worker sends (text and HTML) is that same redacted content.
    assert send_admin_email(**kwargs)["status"] == "sent"
    (msg,) = eml(app)
    assert "400000000042" not in msg.as_string() and "****0042" in msg.as_string()


def test_several_alerts_on_one_customer_give_one_email_per_case(app: Any) -> None:
    """Fraud calls the hook once per new case; alerts that attach to an open case do not
    call it. A case announced again (a redelivered fraud task) is still one e-mail."""
    first = case(3, user_id=5)
    app.runtime.hook.on_fraud_case_opened(case=first, alert=Alert(id=7))
    app.runtime.hook.on_fraud_case_opened(case=first, alert=Alert(id=7))
    app.runtime.hook.on_fraud_case_opened(case=case(4, user_id=6), alert=Alert(id=8))
    jobs = queued(app)
    assert [j["kwargs"]["event"] for j in jobs] == ["fraud-case:3", "fraud-case:3", "fraud-case:4"]
    assert [send_admin_email(**j["kwargs"])["status"] for j in jobs] == [
        "sent",
        "duplicate",
        "sent",
    ]
    assert sorted(str(m["Subject"]) for m in eml(app)) == [
        "[fraud] case #3 opened: high large_transaction",
        "[fraud] case #4 opened: high large_transaction",
    ]
    assert sorted(r.idempotency_key for r in outbox_rows(app)) == [
        "event:fraud-case:3",
        "event:fraud-case:4",
    ]


def test_export_ready_tells_the_user_the_file_name_only(app: Any) -> None:
    export = Export()
    (answer,) = app.runtime.hook.on_export_ready(export=export)
    (job,) = queued(app)
    assert answer == {"queued": job["id"]}
    assert job["task"] == "notifications.send_email_notification"
    kwargs = job["kwargs"]
    assert (kwargs["user_id"], kwargs["event"]) == (1, "export-ready:5")
    body = kwargs["message"] + kwargs["html_message"]
    assert export.file_name in body
    assert "/srv/" not in body and export.sha256 not in body
    assert send_email_notification(**kwargs)["status"] == "sent"
    (msg,) = eml(app)
    assert msg["To"] == "user1@example.com"


def test_hooks_queue_on_the_notifications_queue_only(app: Any) -> None:
    app.runtime.hook.on_fraud_case_opened(case=case(1), alert=Alert(id=1))
    app.runtime.hook.on_fraud_case_opened(case=case(2), alert=Alert(id=2))
    assert [j["kwargs"]["event"] for j in queued(app)] == [
        "fraud-case:1",
        "fraud-case:2",
    ]
    assert queued(app, "celery") == []


def test_without_the_owners_the_plugin_still_builds_and_sends(notif_app: Any) -> None:
    app = notif_app()  # no reports, fraud or export: their hooks are simply never called
    assert not app.runtime.is_enabled("reports")
    assert send_admin_email(subject="Hi", message="Body")["status"] == "sent"


def test_the_real_owners_hookspecs_accept_these_implementations(notif_app: Any) -> None:
    app = notif_app("reports", "fraud", "export")
    for hook in ("on_report_generated", "on_fraud_case_opened", "on_export_ready"):
        caller = getattr(app.runtime.hook, hook)
        assert caller.spec is not None, f"{hook} is declared by its owner"
        assert "notifications" in [impl.plugin_name for impl in caller.get_hookimpls()]
    emailing = [i.plugin_name for i in app.runtime.hook.on_fraud_alert.get_hookimpls()]
    assert "notifications" not in emailing, "one e-mail per case, none per alert"
    answers = app.runtime.hook.on_fraud_case_opened(case=case(9), alert=Alert(id=9))
    (job,) = queued(app)
    assert {"queued": job["id"]} in answers
    assert (job["task"], job["kwargs"]["event"]) == (
        "notifications.send_admin_email",
        "fraud-case:9",
    )
