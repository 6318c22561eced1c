"""SMTP through real servers (aiosmtpd): delivery, TLS wiring, login, and failure classes."""

from __future__ import annotations

import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banktasks_testing import SMTPRecorder
from core import TaskArgumentError
from plugins.notifications import (
    PermanentFailure,
    SMTPChannel,
    TemporaryFailure,
    send_admin_email,
    send_email_notification,
)
from plugins.notifications.tests.helpers import outbox_rows

TASK = "notifications.send_email_notification"
PASSWORD = "s3cret-Pa55"


def smtp_env(port: int, **extra: str) -> dict[str, str]:
    return {"EMAIL_BACKEND": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), **extra}


def test_delivered_with_from_to_subject_and_body(notif_app: Any, smtp_server: SMTPRecorder) -> None:
    app = notif_app(**smtp_env(smtp_server.port))
    result = send_email_notification(
        user_id=1,
        subject="Account Update",
        message="Your account has been updated successfully.",
        html_message="<p>Your account has been <b>updated</b>.</p>",
    )
    assert result["status"] == "sent" and result["channel"] == "smtp"
    (msg,) = smtp_server.messages
    (envelope,) = smtp_server.envelopes
    assert envelope.mail_from == "noreply@banking.com"
    assert envelope.rcpt_tos == ["user1@example.com"]
    assert msg["From"] == "noreply@banking.com"
    assert msg["To"] == "user1@example.com"
    assert msg["Subject"] == "Account Update"
    assert msg["Message-ID"] == result["message_id"]
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_payload()
    assert plain.get_payload(decode=True).decode().strip() == (
        "Your account has been updated successfully."
    )
    assert "<b>updated</b>" in html.get_payload(decode=True).decode()
    (row,) = outbox_rows(app)
    assert (row.status, row.channel, row.attempts) == ("sent", "smtp", 1)


def test_admin_email_goes_to_admin_email(notif_app: Any, smtp_server: SMTPRecorder) -> None:
    notif_app(**smtp_env(smtp_server.port, ADMIN_EMAIL="ops@bank.example"))
    send_admin_email(subject="Daily report", message="All good.")
    (envelope,) = smtp_server.envelopes
    assert envelope.rcpt_tos == ["ops@bank.example"]


def test_server_down_is_a_temporary_failure(notif_app: Any, smtp_server: SMTPRecorder) -> None:
    app = notif_app(**smtp_env(smtp_server.port))
    smtp_server.stop()
    with pytest.raises(TemporaryFailure, match="ConnectionRefusedError"):
        send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="down")
    (row,) = outbox_rows(app)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "ConnectionRefusedError" in row.error
    smtp_server.start()
    result = send_email_notification(
        user_id=1, subject="Hi", message="Body", idempotency_key="down"
    )
    assert result["status"] == "sent" and result["attempts"] == 2
    assert len(smtp_server.messages) == 1


def test_451_is_a_temporary_failure(notif_app: Any, smtp_server: SMTPRecorder) -> None:
    app = notif_app(**smtp_env(smtp_server.port))
    smtp_server.reply = "451 4.3.0 try again later"
    with pytest.raises(TemporaryFailure, match=r"451 4\.3\.0 try again later"):
        send_email_notification(user_id=1, subject="Hi", message="Body")
    (row,) = outbox_rows(app)
    assert row.status == "pending" and "451" in row.error
    assert smtp_server.messages == []


def test_550_fails_at_once_with_the_reason_in_the_outbox(
    notif_app: Any, smtp_server: SMTPRecorder
) -> None:
    app = notif_app(**smtp_env(smtp_server.port))
    smtp_server.reply = "550 5.1.1 <user1@example.com>: mailbox unavailable"
    result = app.tasks[TASK].apply(
        kwargs={"user_id": 1, "subject": "Hi", "message": "Body"}, task_id="t-550"
    )
    assert result.failed()
    assert isinstance(result.result, PermanentFailure)
    assert smtp_server.attempts == 1, "a permanent failure is not retried"
    (row,) = outbox_rows(app)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "550 5.1.1" in row.error and "mailbox unavailable" in row.error
    assert "user1@example.com" not in row.error, "addresses in errors are masked"


def test_retries_five_times_then_fails_and_marks_the_row(
    notif_app: Any, smtp_server: SMTPRecorder
) -> None:
    # apply() runs Celery's retries eagerly (countdowns are not waited for).
    app = notif_app(**smtp_env(smtp_server.port))
    smtp_server.reply = "421 4.7.0 too busy"
    result = app.tasks[TASK].apply(
        kwargs={"user_id": 1, "subject": "Hi", "message": "Body"}, task_id="t-421"
    )
    assert result.failed() and isinstance(result.result, TemporaryFailure)
    assert smtp_server.attempts == 6, "1 try + 5 retries"
    (row,) = outbox_rows(app)
    assert (row.idempotency_key, row.status, row.attempts) == ("task:t-421", "failed", 6)
    assert row.error.startswith("gave up after 6 attempts: TemporaryFailure")


def test_recovers_on_a_retry_and_sends_once(notif_app: Any, smtp_server: SMTPRecorder) -> None:
    app = notif_app(**smtp_env(smtp_server.port))

    from celery.signals import task_retry

    def recover(**_: Any) -> None:
        if smtp_server.attempts == 2:
            smtp_server.reply = None

    smtp_server.reply = "451 later"
    task_retry.connect(recover, weak=False)
    try:
        result = app.tasks[TASK].apply(
            kwargs={"user_id": 1, "subject": "Hi", "message": "Body"}, task_id="t-rec"
        )
    finally:
        task_retry.disconnect(recover)
    assert result.get()["status"] == "sent"
    assert smtp_server.attempts == 3 and len(smtp_server.messages) == 1
    (row,) = outbox_rows(app)
    assert (row.status, row.attempts, row.error) == ("sent", 3, None)


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        (2, "user 2 is inactive"),
        (3, "user 3 has no e-mail address"),
    ],
)
def test_inactive_or_addressless_user_fails_at_once(
    notif_app: Any, smtp_server: SMTPRecorder, user_id: int, reason: str
) -> None:
    app = notif_app(**smtp_env(smtp_server.port))
    result = app.tasks[TASK].apply(
        kwargs={"user_id": user_id, "subject": "Hi", "message": "Body"}, task_id=f"u{user_id}"
    )
    assert result.failed()
    assert isinstance(result.result, PermanentFailure)
    assert reason in str(result.result)
    (row,) = outbox_rows(app)
    assert (row.user_id, row.status, row.attempts) == (user_id, "failed", 1)
    assert row.error == f"PermanentFailure: {reason}; nothing was sent"
    assert smtp_server.attempts == 0


def test_unknown_user_is_a_bad_argument_without_an_outbox_row(
    notif_app: Any, smtp_server: SMTPRecorder
) -> None:
    app = notif_app(**smtp_env(smtp_server.port))
    result = app.tasks[TASK].apply(
        kwargs={"user_id": 999, "subject": "Hi", "message": "Body"}, task_id="u999"
    )
    assert result.failed()
    assert isinstance(result.result, TaskArgumentError)
    assert "user_id=999: no such user; nothing was sent" in str(result.result)
    assert outbox_rows(app) == []
    assert smtp_server.attempts == 0


def test_a_server_that_never_answers_times_out_temporarily(notif_app: Any) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        notif_app(**smtp_env(port, SMTP_TIMEOUT="0.3"))
        with pytest.raises(TemporaryFailure, match=r"(?i)timeout|timed out"):
            send_email_notification(user_id=1, subject="Hi", message="Body")


# --- TLS: real servers with a throw-away certificate --------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class _Auth:
    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        ok = data.login == b"mailer" and data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Any]:
    """`tls_server(mode)`: a real aiosmtpd server with STARTTLS (+ AUTH) or implicit TLS."""
    from aiosmtpd.controller import Controller

    started: list[Any] = []

    def start(mode: str) -> SMTPRecorder:
        cert, key = certificate
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        recorder = SMTPRecorder()
        if mode == "starttls":
            controller = Controller(
                recorder,
                hostname="127.0.0.1",
                port=recorder.port,
                tls_context=context,
                require_starttls=True,
                authenticator=_Auth(),
                auth_require_tls=True,
            )
        else:
            controller = Controller(
                recorder, hostname="127.0.0.1", port=recorder.port, ssl_context=context
            )
        controller.start()
        started.append(controller)
        return recorder

    yield start
    for controller in started:
        controller.stop()


def test_starttls_with_login_over_a_verified_connection(
    notif_app: Any, tls_server: Any, certificate: tuple[Path, Path]
) -> None:
    server = tls_server("starttls")
    app = notif_app(
        **smtp_env(
            server.port,
            SMTP_SECURITY="starttls",
            SMTP_USERNAME="mailer",
            SMTP_PASSWORD=PASSWORD,
            SMTP_CA_FILE=str(certificate[0]),
        )
    )
    channel = SMTPChannel(app.runtime.settings_for("notifications"))
    connection = channel.connect()
    try:
        assert type(connection) is smtplib.SMTP
    finally:
        connection.close()
    send_email_notification(user_id=1, subject="Over TLS", message="Body")
    (msg,) = server.messages
    assert msg["Subject"] == "Over TLS"


def test_wrong_password_is_permanent_and_never_shown(
    notif_app: Any, tls_server: Any, certificate: tuple[Path, Path], capsys: Any
) -> None:
    server = tls_server("starttls")
    app = notif_app(
        **smtp_env(
            server.port,
            SMTP_SECURITY="starttls",
            SMTP_USERNAME="mailer",
            SMTP_PASSWORD="wrong-" + PASSWORD,
            SMTP_CA_FILE=str(certificate[0]),
        )
    )
    with pytest.raises(PermanentFailure, match="535") as info:
        send_email_notification(user_id=1, subject="Hi", message="Body")
    (row,) = outbox_rows(app)
    assert row.status == "failed"
    captured = capsys.readouterr()
    for text in (str(info.value), row.error, captured.out, captured.err):
        assert PASSWORD not in text
    assert PASSWORD not in repr(app.runtime.settings_for("notifications"))
    assert server.messages == []


def test_implicit_ssl_uses_smtp_ssl(
    notif_app: Any, tls_server: Any, certificate: tuple[Path, Path]
) -> None:
    server = tls_server("ssl")
    app = notif_app(**smtp_env(server.port, SMTP_SECURITY="ssl", SMTP_CA_FILE=str(certificate[0])))
    connection = SMTPChannel(app.runtime.settings_for("notifications")).connect()
    try:
        assert isinstance(connection, smtplib.SMTP_SSL)
    finally:
        connection.close()
    send_email_notification(user_id=1, subject="Over SSL", message="Body")
    (msg,) = server.messages
    assert msg["Subject"] == "Over SSL"


def test_untrusted_certificate_is_a_permanent_failure(notif_app: Any, tls_server: Any) -> None:
    server = tls_server("ssl")
    notif_app(**smtp_env(server.port, SMTP_SECURITY="ssl"))  # no SMTP_CA_FILE
    with pytest.raises(PermanentFailure, match=r"TLS failed.*CERTIFICATE_VERIFY_FAILED"):
        send_email_notification(user_id=1, subject="Hi", message="Body")
    assert server.messages == []


def test_ssl_against_a_plain_server_says_what_to_check(
    notif_app: Any, smtp_server: SMTPRecorder
) -> None:
    notif_app(**smtp_env(smtp_server.port, SMTP_SECURITY="ssl"))
    with pytest.raises(PermanentFailure, match="SMTP_SECURITY, SMTP_PORT"):
        send_email_notification(user_id=1, subject="Hi", message="Body")


def test_starttls_against_a_server_without_it_is_permanent(
    notif_app: Any, smtp_server: SMTPRecorder
) -> None:
    notif_app(**smtp_env(smtp_server.port, SMTP_SECURITY="starttls"))
    with pytest.raises(PermanentFailure, match="STARTTLS extension not supported"):
        send_email_notification(user_id=1, subject="Hi", message="Body")
    assert smtp_server.messages == []


def test_default_ports_follow_the_security_mode(bt_env: Any) -> None:
    from plugins.notifications import NotificationsSettings

    ports = {
        mode: NotificationsSettings(smtp_security=mode).port for mode in ("none", "starttls", "ssl")
    }
    assert ports == {"none": 25, "starttls": 587, "ssl": 465}
    assert NotificationsSettings(smtp_security="ssl", smtp_port=2465).port == 2465
