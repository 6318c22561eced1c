"""No secret and no personal data in any log line.

Every task runs through a real worker with LOG_LEVEL=DEBUG and LOG_FORMAT=json, e-mail
goes through a real SMTP server that requires a login (SMTP_USERNAME/SMTP_PASSWORD), and
the broker URL carries the broker's password. Neither password, no full e-mail address
and no full account number may appear in any line the worker wrote, nor in what the
caller (this process) logged.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from banktasks_testing import SMTPRecorder, send_unchecked, wait_for
from core.default_plugins.seed import seed
from core.logging import configure_logging
from core.models import Account, User
from plugins.notifications.models import OutboxEntry
from tests.security.conftest import USERS, activate_all, queued_messages

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

SMTP_USER = "bank-mailer"
SMTP_SECRET = "Smtp-Pa55word-9f3e1c"
FULL_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
ACCOUNT_NUMBER = re.compile(r"40\d{10}")
TEST_INFRASTRUCTURE_LOGGERS = ("mail.log", "mail.debug", "aiosmtpd")
"""The SMTP server of this test runs in this process; its own DEBUG lines (the AUTH
dialogue included) are the test's, not banktasks'."""


@dataclass
class LoginSMTPServer(SMTPRecorder):
    """The recording SMTP server, with AUTH (PLAIN/LOGIN) offered over plain text: it is
    on 127.0.0.1, where notifications allows a login without TLS."""

    logins: list[tuple[bytes, bool]] = field(default_factory=list)

    def start(self) -> LoginSMTPServer:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        def authenticator(_server: Any, _session: Any, _envelope: Any, _mech: str, data: Any):
            ok = data.login == SMTP_USER.encode() and data.password == SMTP_SECRET.encode()
            self.logins.append((data.login, ok))
            return AuthResult(success=ok)

        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticator,
            auth_require_tls=False,
            auth_required=True,
        )
        self._controller.start()
        return self


@pytest.fixture
def login_smtp() -> Iterator[LoginSMTPServer]:
    server = LoginSMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def caller_log() -> Iterator[io.StringIO]:
    """This process's log lines, through the product's own pipeline (JSON, DEBUG)."""
    buffer = io.StringIO()
    configure_logging("json", "DEBUG", stream=buffer)
    yield buffer
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == "banktasks":
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def forbidden_strings(broker_password: str) -> dict[str, str]:
    plain = f"\0{SMTP_USER}\0{SMTP_SECRET}".encode()
    return {
        "SMTP password": SMTP_SECRET,
        "SMTP password (AUTH PLAIN, base64)": base64.b64encode(plain).decode(),
        "SMTP password (AUTH LOGIN, base64)": base64.b64encode(SMTP_SECRET.encode()).decode(),
        "broker password": broker_password,
    }


def logger_of(line: str) -> str:
    try:
        return str(json.loads(line).get("logger", ""))
    except (ValueError, AttributeError):
        return ""  # Celery's banner and warnings are plain text


def leaks(lines: list[str], secrets: dict[str, str], numbers: set[str]) -> list[str]:
    found = []
    for line in lines:
        if logger_of(line).startswith(TEST_INFRASTRUCTURE_LOGGERS):
            continue
        for what, secret in secrets.items():
            if secret in line:
                found.append(f"{what}: {line[:300]}")
        if match := FULL_EMAIL.search(line):
            found.append(f"e-mail address {match.group(0)!r}: {line[:300]}")
        for match in ACCOUNT_NUMBER.finditer(line):
            if match.group(0) in numbers:
                at = match.start()
                found.append(
                    f"account number {match.group(0)}: …{line[max(0, at - 80) : at + 40]}…"
                )
    return found


def test_every_task_at_debug_logs_no_secret_address_or_account_number(
    e2e: Any, login_smtp: LoginSMTPServer, caller_log: io.StringIO
) -> None:
    broker_password = urlsplit(e2e.env["REDIS_URL"]).password or ""
    assert len(broker_password) >= 16, "the embedded broker has a generated password"
    e2e.set(
        LOG_LEVEL="DEBUG",
        LOG_FORMAT="json",
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(login_smtp.port),
        SMTP_USERNAME=SMTP_USER,
        SMTP_PASSWORD=SMTP_SECRET,
        FRAUD_ALERT_MIN_SEVERITY="medium",
        ADMIN_EMAIL="Risk Office <risk.officer@bank.example>",
    )
    app = e2e.app()
    seed(app.runtime.db, users=USERS, transactions=400, days=30)
    activate_all(app)
    with app.runtime.db.session() as session:
        numbers = set(session.scalars(select(Account.number)))
        emails = set(session.scalars(select(User.email)))
        number_of_user_1 = session.scalars(
            select(Account.number).where(Account.user_id == 1)
        ).first()
    assert numbers and emails and number_of_user_1
    worker = e2e.start_worker(concurrency=2, extra=["--loglevel=DEBUG"])

    today = datetime.now(UTC).date()
    personal = f"user1@example.com, account {number_of_user_1}"
    results = [
        app.tasks["fraud.analyze_fraud_patterns"].delay(),
        app.tasks["reports.generate_daily_reports"].delay(),
        app.tasks["notifications.send_email_notification"].delay(
            user_id=1,
            subject=f"About {personal}",
            message=f"Dear user1@example.com,\nyour account {number_of_user_1} was updated.",
            html_message=f"<p>Account <b>{number_of_user_1}</b> of user1@example.com</p>",
        ),
        app.tasks["notifications.send_admin_email"].delay(
            subject=f"Customer {personal}",
            message=f"Card 4000123412341234 of {personal}. Closing account {number_of_user_1}.",
        ),
        app.tasks["export.export_transaction_data"].delay(
            user_id=1, start_date=(today - timedelta(days=30)).isoformat(), end_date=today
        ),
        app.tasks["health.system_health_check"].delay(),
    ]
    refused = [  # bypassing the caller: the worker logs the refusal, with the bad value
        send_unchecked(
            app,
            "notifications.send_email_notification",
            kwargs={
                "user_id": 1,
                "subject": f"{personal}\r\nBcc: user2@example.com",
                "message": "m",
            },
        ),
        send_unchecked(
            app,
            "export.export_transaction_data",
            kwargs={
                "user_id": number_of_user_1,
                "start_date": "x",
                "end_date": "user3@example.com",
            },
        ),
    ]
    for result in results:
        assert result.get(timeout=90) is not None
    for result in refused:
        wait_for(result.ready, 60, "the refusal")
        assert result.failed()

    def settled() -> bool:
        with app.runtime.db.session() as session:
            pending = session.scalars(
                select(OutboxEntry).where(OutboxEntry.status == "pending")
            ).all()
        return not pending and queued_messages(app) == 0

    wait_for(settled, 60, "follow-up e-mails (fraud cases, report, export ready) to go out")
    # the follow-ups really went through the logged-in SMTP session
    assert login_smtp.logins and all(ok for _login, ok in login_smtp.logins)
    recipients = {rcpt for env in login_smtp.envelopes for rcpt in env.rcpt_tos}
    assert {"user1@example.com", "risk.officer@bank.example"} <= recipients
    with app.runtime.db.session() as session:
        kinds = {row.kind for row in session.scalars(select(OutboxEntry))}
    assert kinds == {"user", "admin"}

    worker_lines = worker.log().splitlines()
    caller_lines = caller_log.getvalue().splitlines()
    assert any('"level": "debug"' in line for line in worker_lines), "DEBUG was not on"
    assert any("task_dead_lettered" in line for line in worker_lines)
    assert [line for line in caller_lines if logger_of(line).startswith(("celery", "redis"))]
    secrets = forbidden_strings(broker_password)
    planted = [  # the detector itself catches each kind of leak
        f'{{"event": "login with {SMTP_SECRET}"}}',
        f'{{"event": "redis://:{broker_password}@127.0.0.1/0"}}',
        '{"event": "sent to user1@example.com"}',
        f'{{"event": "account {next(iter(numbers))}."}}',
    ]
    assert len(leaks(planted, secrets, numbers)) == len(planted)
    found = leaks(worker_lines, secrets, numbers) + leaks(caller_lines, secrets, numbers)
    assert not found, f"{len(found)} leaking line(s):\n" + "\n".join(found[:30])
