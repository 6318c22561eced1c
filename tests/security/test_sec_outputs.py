"""What reports and e-mails put out: hostile strings are escaped in HTML and defused in
CSV, an e-mail subject cannot inject headers, and no e-mail carries an attachment."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from banktasks_testing import SMTPRecorder
from core import TaskArgumentError, hookimpl
from core.default_plugins.seed import seed
from core.models import Account, Transaction, User
from plugins.notifications import PermanentFailure
from plugins.notifications.models import OutboxEntry
from tests.security.conftest import USERS, activate_all, queued_messages, run_queued, take_queued

DAY = date(2024, 3, 5)
SCRIPT = "<script>alert('section')</script>"
HOSTILE: dict[str, Any] = {
    "<script>alert(1)</script>": '"><img src=x onerror=alert(1)>',
    "nested": {
        "</td></tr></table><svg onload=alert(1)>": "<iframe src=javascript:alert(1)>",
        "formula": '=HYPERLINK("http://evil.test")',
        "count": 5,
    },
    "list": ["<b>bold</b>", "&amp;", "'quoted' \"double\""],
}
GRID = {
    "<a href=//evil.test>": {"c<1>": "<i>1</i>", "c2": "@SUM(1+1)"},
    "row": {"c<1>": 1, "c2": 2},
}


class HostileSections:
    """A report-section plugin whose data is attacker-controlled text."""

    @hookimpl
    def register_report_sections(self, report_date: date) -> list[tuple[str, dict[str, Any]]]:
        return [(SCRIPT, HOSTILE), ("grid <b>", GRID)]


class TagRecorder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def html_tags(markup: str) -> TagRecorder:
    parser = TagRecorder()
    parser.feed(markup)
    parser.close()
    return parser


@pytest.fixture
def mail_env(monkeypatch: pytest.MonkeyPatch, smtp_server: SMTPRecorder) -> SMTPRecorder:
    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    return smtp_server


def test_html_report_escapes_hostile_strings(
    make_app: Any, mail_env: SMTPRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(plugins=["reports", "notifications", HostileSections()])
    with app.runtime.db.session() as session:
        session.add(User(id=1, email="user1@example.com", full_name="<b>Ada</b>"))
        session.add(Account(id=1, user_id=1, number="401234567890", currency="<b>"))
        session.flush()
        session.add(
            Transaction(
                account_id=1,
                amount=Decimal("12.34"),
                currency="<i>",
                kind="payment",
                counterparty="<script>x</script>",
                created_at=datetime(2024, 3, 5, 9, tzinfo=UTC),
            )
        )
    result = app.tasks["reports.generate_daily_reports"].spec(report_date=DAY)

    page = Path(result["files"]["html"]).read_text(encoding="utf-8")
    parsed = html_tags(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "tr"}
    allowed |= {"th", "td"}
    assert {tag for tag, _ in parsed.tags} <= allowed, parsed.tags
    attributes = {(tag, name) for tag, attrs in parsed.tags for name, _ in attrs}
    assert attributes <= {("html", "lang"), ("meta", "charset"), ("h2", "class")}, attributes
    text = "".join(parsed.text)
    for hostile in [SCRIPT, '"><img src=x onerror=alert(1)>', "<iframe src=javascript:alert(1)>"]:
        assert hostile in text, f"{hostile!r} was dropped instead of shown escaped"
    assert "<i>" in text  # the currency code, shown as text

    with open(result["files"]["csv"], encoding="utf-8", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    for cell in cells:
        if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
            float(cell)  # only plain numbers may start with a sign
    assert '\'=HYPERLINK("http://evil.test")' in cells
    json.loads(Path(result["files"]["json"]).read_text(encoding="utf-8"))

    # The summary e-mail to the admins (queued by notifications) is escaped as well
    [(task, kwargs)] = take_queued(app)
    assert task == "notifications.send_admin_email"
    mail = html_tags(kwargs["html_message"])
    assert {tag for tag, _ in mail.tags} <= {"html", "body", "h1", "pre", "p", "ul", "li"}
    assert not [attrs for _tag, attrs in mail.tags if attrs]
    assert SCRIPT in "".join(mail.text)
    app.tasks[task].apply(kwargs=kwargs).get()
    [message] = mail_env.messages
    assert_no_attachment(message)


INJECTIONS = [
    "Hi\r\nBcc: victim@evil.test",
    "Hi\nBcc: victim@evil.test",
    "Hi\rBcc: victim@evil.test",
    "Hi\r\n\r\n<html>spoofed body",
    "Hi\u2028Bcc: victim@evil.test",
    "Hi\u2029Bcc: victim@evil.test",
    "Hi\x85Bcc: victim@evil.test",
    "Hi\x0bBcc: victim@evil.test",
    "Hi\x0cBcc: victim@evil.test",
    "Hi\x00Bcc: victim@evil.test",
]


@pytest.fixture
def mail_app(make_app: Any, mail_env: SMTPRecorder) -> Any:
    app = make_app(plugins=["notifications"])
    with app.runtime.db.session() as session:
        session.add(User(id=1, email="user1@example.com", full_name="Ada"))
        session.add(
            User(id=9, email="user9@example.com\r\nBcc: victim@evil.test", full_name="Mallory")
        )
    return app


def outbox(app: Any) -> list[OutboxEntry]:
    with app.runtime.db.session() as session:
        return list(session.scalars(select(OutboxEntry)))


@pytest.mark.parametrize("subject", INJECTIONS)
@pytest.mark.parametrize("task", ["send_email_notification", "send_admin_email"])
def test_subject_header_injection_is_refused(
    mail_app: Any, mail_env: SMTPRecorder, subject: str, task: str
) -> None:
    celery_task = mail_app.tasks[f"notifications.{task}"]
    kwargs: dict[str, Any] = {"subject": subject, "message": "Body"}
    if task == "send_email_notification":
        kwargs["user_id"] = 1
    with pytest.raises(TaskArgumentError, match=r"line break|control characters"):
        celery_task.delay(**kwargs)
    with pytest.raises(TaskArgumentError, match=r"line break|control characters"):
        celery_task.spec(**kwargs)
    assert queued_messages(mail_app) == 0
    assert outbox(mail_app) == []
    assert mail_env.attempts == 0


ENCODED_INJECTIONS = [
    "=?utf-8?q?Hi=0D=0ABcc:_victim@evil.test?=",
    "=?utf-8?b?SGkNCkJjYzogdmljdGltQGV2aWwudGVzdA==?=",
    "Hi =?utf-8?q?=0A?=X-Evil: 1",
    "=?utf-8?q?Hi=0D=0A=0D=0A<b>spoofed_body</b>?=",
    "=?utf-8?q?Hi=E2=80=A8Bcc:_victim@evil.test?=",
]


@pytest.mark.parametrize("subject", ENCODED_INJECTIONS)
def test_encoded_words_cannot_smuggle_a_header(
    mail_app: Any, mail_env: SMTPRecorder, subject: str
) -> None:
    """An RFC 2047 encoded word that decodes to CR/LF: Python's `email` before 3.11.10 writes
    the decoded line break raw (CVE-2024-6923), so the subject is refused up front."""
    task = mail_app.tasks["notifications.send_email_notification"]
    for call in (task.delay, task.spec):
        with pytest.raises(TaskArgumentError, match="line break"):
            call(user_id=1, subject=subject, message="Body")
    assert queued_messages(mail_app) == 0 and outbox(mail_app) == []
    assert mail_env.attempts == 0


def test_a_header_that_decodes_to_a_line_break_is_never_written() -> None:
    """Defence in depth below the argument check: a `Message` built by other code (a plugin's
    channel, a hook) refuses a header that `email` would decode into a line break."""
    from plugins.notifications import Message

    message = Message(
        to="user1@example.com",
        from_="noreply@bank.test",
        subject="=?utf-8?q?Hi=0D=0ABcc:_victim@evil.test?=",
        text="Body",
    )
    with pytest.raises(ValueError, match="line break"):
        message.as_bytes()
    tagged = Message(
        to="user1@example.com",
        from_="noreply@bank.test",
        subject="Hi",
        text="Body",
        headers={"X-Tag": "=?utf-8?q?a=0AX-Evil:_1?="},
    )
    with pytest.raises(ValueError, match="line break"):
        tagged.as_bytes()


@pytest.mark.parametrize("subject", ["=?utf-8?q?caf=C3=A9?=", "Café ☕ — ok", "50% off =?"])
def test_harmless_subjects_still_go_out_as_one_header(
    mail_app: Any, mail_env: SMTPRecorder, subject: str
) -> None:
    mail_app.tasks["notifications.send_email_notification"].spec(
        user_id=1, subject=subject, message="Body"
    )
    [envelope] = mail_env.envelopes
    assert envelope.rcpt_tos == ["user1@example.com"]
    [message] = mail_env.messages
    assert len(message.get_all("Subject")) == 1
    assert message.get_all("Bcc") is None and message.get_all("Cc") is None
    assert sorted(message.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Content-Type",
         "Content-Transfer-Encoding", "MIME-Version"]
    )  # fmt: skip


def test_a_stored_address_with_a_line_break_is_never_used(
    mail_app: Any, mail_env: SMTPRecorder
) -> None:
    with pytest.raises(PermanentFailure, match="invalid e-mail address"):
        mail_app.tasks["notifications.send_email_notification"].spec(
            user_id=9, subject="Hi", message="Body"
        )
    assert mail_env.attempts == 0 and mail_env.messages == []


def assert_no_attachment(message: Message) -> None:
    for part in message.walk():
        assert part.get_content_type() in {"multipart/alternative", "text/plain", "text/html"}
        assert part.get_content_disposition() in (None, "inline"), part.get_content_disposition()
        assert part.get_filename() is None


def test_no_e_mail_carries_an_attachment(make_app: Any, mail_env: SMTPRecorder) -> None:
    """User notification, export ready, daily report and new fraud case: text and HTML only,
    and the export's data stays in its file."""
    app = make_app(plugins=["reports", "fraud", "notifications", "export"])
    seed(app.runtime.db, users=USERS, transactions=300, days=30)
    activate_all(app)
    today = datetime.now(UTC).date()
    app.tasks["notifications.send_email_notification"].spec(
        user_id=1, subject="Hi", message="Body", html_message="<p>Body</p>"
    )
    exported = app.tasks["export.export_transaction_data"].spec(
        user_id=1, start_date=today - timedelta(days=30), end_date=today
    )
    app.tasks["reports.generate_daily_reports"].spec()
    app.tasks["fraud.analyze_fraud_patterns"].spec()
    run_queued(app)

    subjects = [str(m["Subject"]) for m in mail_env.messages]
    assert "Your transaction export is ready" in subjects
    assert any(s.startswith("Daily report") for s in subjects)
    assert any(re.match(r"\[fraud\] case #\d+ opened: ", s) for s in subjects)
    assert exported["rows"] > 0
    rows = Path(exported["path"]).read_text(encoding="utf-8").splitlines()[1:]
    for message in mail_env.messages:
        assert_no_attachment(message)
    ready = next(m for m in mail_env.messages if m["Subject"] == "Your transaction export is ready")
    body = ready.as_string()
    assert exported["file_name"] in io.StringIO(body).read()
    assert all(row not in body for row in rows), "export data in the e-mail"
    assert exported["path"] not in body, "the server path is not the user's business"
