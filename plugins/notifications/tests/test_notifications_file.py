"""The file backend (development default), the console channel and channel selection."""

from __future__ import annotations

import email
import email.policy
import io
from pathlib import Path
from typing import Any

import pytest

from banktasks_testing import fake_plugin
from core import ConfigError
from plugins.notifications import (
    ConsoleChannel,
    Message,
    PermanentFailure,
    get_channel,
    send_admin_email,
    send_email_notification,
)
from plugins.notifications.tests.helpers import outbox_rows


def eml_files(app: Any) -> list[Path]:
    return sorted((app.runtime.settings.var_dir / "outbox").glob("*.eml"))


def parse(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_default_backend_is_file_and_writes_one_eml_with_headers(notif_app: Any) -> None:
    app = notif_app()
    result = send_email_notification(
        user_id=1,
        subject="Account Update",
        message="Your account has been updated successfully.",
        idempotency_key="k-1",
    )
    assert result["status"] == "sent"
    assert result["channel"] == "file"
    (path,) = eml_files(app)
    assert path.name == result["message_id"].strip("<>").split("@")[0] + ".eml"
    assert path.stat().st_mode & 0o777 == 0o600
    msg = parse(path)
    assert msg["From"] == "noreply@banking.com"
    assert msg["To"] == "user1@example.com"
    assert msg["Subject"] == "Account Update"
    assert msg["Message-ID"] == result["message_id"]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"]
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "Your account has been updated successfully."
    assert not list(path.parent.glob(".*tmp")), "no temp file may be left behind"


def test_html_makes_multipart_alternative_with_text_first(notif_app: Any) -> None:
    app = notif_app()
    send_email_notification(
        user_id=1,
        subject="Statement ready — 100 %",
        message="Plain body, naïve café.",
        html_message="<p>HTML <b>body</b></p>",
        idempotency_key="k-html",
    )
    msg = parse(eml_files(app)[0])
    assert msg.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert msg["Subject"] == "Statement ready — 100 %"
    assert msg.get_body(("plain",)).get_content().strip() == "Plain body, naïve café."
    assert msg.get_body(("html",)).get_content().strip() == "<p>HTML <b>body</b></p>"


def test_outbox_dir_and_from_address_come_from_settings(notif_app: Any, tmp_path: Path) -> None:
    target = tmp_path / "mails"
    notif_app(
        NOTIFICATIONS_OUTBOX_DIR=str(target),
        DEFAULT_FROM_EMAIL="Bank <no-reply@bank.example>",
        ADMIN_EMAIL="ops@bank.example",
    )
    send_admin_email(subject="Hello admins", message="text", idempotency_key="admin-1")
    (path,) = target.glob("*.eml")
    msg = parse(path)
    assert msg["From"] == "Bank <no-reply@bank.example>"
    assert msg["To"] == "ops@bank.example"


def test_a_blank_outbox_dir_is_the_default(notif_app: Any) -> None:
    app = notif_app(NOTIFICATIONS_OUTBOX_DIR="  ")
    assert app.runtime.settings_for("notifications").outbox_dir is None
    send_admin_email(subject="Hello admins", message="text", idempotency_key="admin-blank")
    assert len(eml_files(app)) == 1


def test_an_outbox_dir_that_is_a_file_stops_startup(notif_app: Any, tmp_path: Path) -> None:
    a_file = tmp_path / "outbox.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        notif_app(plugin_settings={"notifications": {"outbox_dir": str(a_file)}})


def test_console_channel_prints_a_redacted_summary_without_body() -> None:
    out = io.StringIO()
    ConsoleChannel(stream=out).send(
        Message(
            to="user1@example.com",
            from_="noreply@banking.com",
            subject="Account Update",
            text="secret body",
            html="<p>secret body</p>",
            message_id="<abc@banktasks>",
        )
    )
    line = out.getvalue()
    assert "u***@example.com" in line
    assert "user1@example.com" not in line
    assert "secret body" not in line
    assert "<abc@banktasks>" in line and "parts=text+html" in line


def test_console_backend_is_picked_by_email_backend(
    notif_app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    app = notif_app(EMAIL_BACKEND="console")
    result = send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="c1")
    assert result["channel"] == "console"
    assert "subject='Hi'" in capsys.readouterr().out
    assert eml_files(app) == []


def test_unknown_backend_stops_startup_listing_the_channels(notif_app: Any) -> None:
    with pytest.raises(ConfigError) as info:
        notif_app(EMAIL_BACKEND="pigeon")
    assert str(info.value) == (
        "EMAIL_BACKEND='pigeon': no such notification channel; "
        "channels there are: console, file, smtp"
    )


class RecordingChannel:
    """A third-party channel, registered through the hook like any plugin would."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)


def channel_plugin(name: str, *channels: Any) -> Any:
    """A third-party plugin `name` that registers `channels` through the hook."""
    return fake_plugin(name, register_notification_channels=lambda: list(channels))


def test_third_party_channel_is_used_when_selected(notif_app: Any) -> None:
    channel = RecordingChannel()
    app = notif_app(channel_plugin("acme_channels", channel), EMAIL_BACKEND="recording")
    assert get_channel("recording", app.runtime) is channel
    result = send_email_notification(
        user_id=4, subject="Hi", message="Body", html_message="<p>Body</p>"
    )
    (message,) = channel.sent
    assert message.to == "user4@example.com"
    assert message.from_ == "noreply@banking.com"
    assert message.html == "<p>Body</p>"
    assert message.message_id == result["message_id"]
    assert eml_files(app) == []


def test_a_channel_name_registered_twice_is_a_config_error(notif_app: Any) -> None:
    with pytest.raises(ConfigError, match="'console' is registered twice"):
        notif_app(channel_plugin("clash", ConsoleChannel()))


@pytest.mark.parametrize("name", ["Slack", "sms gateway", "x" * 33])
def test_a_channel_name_email_backend_cannot_select_is_a_config_error(
    notif_app: Any, name: str
) -> None:
    channel = RecordingChannel()
    channel.name = name
    with pytest.raises(ConfigError) as info:
        notif_app(channel_plugin("odd_names", channel))
    assert str(info.value) == (
        f"plugin 'odd_names': notification channel {name!r} needs a name of lower-case "
        "letters, digits, '_' and '-' (e.g. 'slack'), as EMAIL_BACKEND gives it"
    )


def test_a_channel_that_raises_fails_at_once_and_records_why(notif_app: Any) -> None:
    class Broken:
        name = "broken"

        def send(self, message: Message) -> None:
            raise PermanentFailure("webhook answered 410 Gone")

    app = notif_app(channel_plugin("broken_channel", Broken()), EMAIL_BACKEND="broken")
    with pytest.raises(PermanentFailure, match="410 Gone"):
        send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="b1")
    (row,) = outbox_rows(app)
    assert (row.status, row.attempts, row.channel) == ("failed", 1, "broken")
    assert row.error == "PermanentFailure: webhook answered 410 Gone"
