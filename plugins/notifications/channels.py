"""The built-in channels (smtp, file: one `.eml` per message, console) and channel lookup.

A channel is any object with a `name` and a `send(message)` method (`api.Channel`),
registered through the `register_notification_channels()` hook. `EMAIL_BACKEND`
picks one.
"""

from __future__ import annotations

import smtplib
import ssl
import sys
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from core import ConfigError, current, get_logger
from core.files import safe_filename, write_bytes_atomic
from core.logging import redact_text
from core.validators import is_name
from plugins.notifications.api import Channel, Message, PermanentFailure, TemporaryFailure
from plugins.notifications.settings import NotificationsSettings

log = get_logger(__name__)
PLUGIN = "notifications"


def _settings() -> NotificationsSettings:
    return current().settings_for(PLUGIN)  # type: ignore[no-any-return]


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return redact_text(f"{exc.smtp_code} {text}".strip())


class SMTPChannel:
    """Send through an SMTP server: plain, STARTTLS or SSL, optional login, timeouts.

    Connection problems, timeouts and 4xx replies are TemporaryFailure; 5xx replies,
    TLS problems and a server without STARTTLS are PermanentFailure.
    """

    name = "smtp"

    def __init__(self, settings: NotificationsSettings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> NotificationsSettings:
        """The settings given, else the current app's notifications settings."""
        return self._settings or _settings()

    def tls_context(self) -> ssl.SSLContext:
        """A verifying TLS context (SMTP_CA_FILE adds a private CA)."""
        cafile = self.settings.smtp_ca_file
        return ssl.create_default_context(cafile=str(cafile) if cafile else None)

    def connect(self) -> smtplib.SMTP:
        """Open the connection: `smtplib.SMTP_SSL` for ssl, `smtplib.SMTP` otherwise."""
        s = self.settings
        if s.smtp_security == "ssl":
            return smtplib.SMTP_SSL(
                s.smtp_host, s.port, timeout=s.smtp_timeout, context=self.tls_context()
            )
        return smtplib.SMTP(s.smtp_host, s.port, timeout=s.smtp_timeout)

    def send(self, message: Message) -> None:
        """Deliver one message; classify every failure as temporary or permanent."""
        s = self.settings
        where = f"SMTP {s.smtp_host}:{s.port} ({s.smtp_security})"
        try:
            self._send(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(
                redact_text(f"{code} {reply.decode('utf-8', 'replace')}")
                for code, reply in exc.recipients.values()
            )
            if codes and all(400 <= code < 500 for code in codes):
                raise TemporaryFailure(f"{where} refused the recipient for now: {text}") from None
            raise PermanentFailure(f"{where} refused the recipient: {text}") from None
        except smtplib.SMTPResponseException as exc:
            reply = _smtp_reply(exc)
            if 400 <= exc.smtp_code < 500:
                raise TemporaryFailure(f"{where} answered {reply}") from None
            raise PermanentFailure(f"{where} answered {reply}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentFailure(
                f"{where}: {exc}; check SMTP_SECURITY (none, starttls or ssl) and SMTP_PORT"
            ) from None
        except ssl.SSLError as exc:
            raise PermanentFailure(
                f"{where}: TLS failed ({exc.reason or exc}); check SMTP_SECURITY, SMTP_PORT "
                "and SMTP_CA_FILE"
            ) from None
        except (smtplib.SMTPServerDisconnected, TimeoutError) as exc:
            raise TemporaryFailure(f"{where}: {type(exc).__name__}: {exc}") from None
        except smtplib.SMTPException as exc:  # (a subclass of OSError: test it first)
            raise PermanentFailure(f"{where}: {type(exc).__name__}: {exc}") from None
        except OSError as exc:  # connection refused / reset, unreachable, DNS
            raise TemporaryFailure(f"{where}: {type(exc).__name__}: {exc}") from None

    def _send(self, message: Message) -> None:
        s = self.settings
        smtp = self.connect()
        try:
            if s.smtp_security == "starttls":
                smtp.starttls(context=self.tls_context())
            if s.smtp_username:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                smtp.login(s.smtp_username, password)
            smtp.send_message(
                message.to_email(),
                from_addr=message.envelope_from,
                to_addrs=[message.envelope_to],
            )
        finally:
            # The message is accepted once send_message returns: a failing QUIT must not
            # turn a delivered message into a retry (and a second copy).
            with suppress(Exception):
                smtp.quit()
            with suppress(Exception):
                smtp.close()


class FileChannel:
    """Write one `.eml` file per message (the development default), atomically.

    Files land in NOTIFICATIONS_OUTBOX_DIR (default `<var>/outbox/`), named from the
    Message-ID, so a resend of the same key rewrites the same file.
    """

    name = "file"

    def __init__(self, directory: Path | str | None = None) -> None:
        self._directory = Path(directory) if directory else None

    @property
    def directory(self) -> Path:
        """The folder the files go to."""
        if self._directory is not None:
            return self._directory
        return _settings().outbox_path(current().settings.var_dir)

    @staticmethod
    def file_name(message: Message) -> str:
        """`<abc123@banktasks>` → `abc123.eml`."""
        stem = message.message_id.strip("<>").split("@", 1)[0]
        return safe_filename(f"{stem or 'message'}.eml")

    def send(self, message: Message) -> None:
        """Write the message; a full or failing disk is a TemporaryFailure."""
        try:
            data = message.as_bytes()
            written = write_bytes_atomic(self.directory, self.file_name(message), data)
        except PermissionError:
            raise
        except OSError as exc:
            raise TemporaryFailure(f"could not write to {self.directory}: {exc}") from None
        log.info("email_file_written", file=written.path.name, bytes=written.bytes)


class ConsoleChannel:
    """Print a one-line, redacted summary of each message (no body): for development."""

    name = "console"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def send(self, message: Message) -> None:
        """Print `email <message-id> to=u***@example.com subject='…' parts=text+html`."""
        parts = "text+html" if message.html is not None else "text"
        line = (
            f"email {message.message_id} to={redact_text(message.to)} "
            f"subject={redact_text(message.subject)!r} parts={parts} "
            f"chars={len(message.text) + len(message.html or '')}"
        )
        print(line, file=self._stream or sys.stdout, flush=True)


def builtin_channels() -> list[Channel]:
    """The three channels this plugin registers through its own hook."""
    return [SMTPChannel(), FileChannel(), ConsoleChannel()]


def check_channel_name(plugin: str, channel: Any) -> None:
    """A channel name is what EMAIL_BACKEND (lower-cased) selects: a plain lower-case name."""
    if not is_name(channel.name):
        raise ConfigError(
            f"plugin {plugin!r}: notification channel {channel.name!r} needs a name of "
            "lower-case letters, digits, '_' and '-' (e.g. 'slack'), as EMAIL_BACKEND gives it"
        )


def registered_channels(runtime: Any = None) -> dict[str, Channel]:
    """Every channel the enabled plugins register, by name (a name registered twice is an error)."""
    runtime = runtime or current()
    channels: dict[str, Channel] = runtime.plugins.collect_named(
        "register_notification_channels",
        "notification channel",
        methods=("send",),
        check=check_channel_name,
    )
    return channels


def get_channel(name: str | None = None, runtime: Any = None) -> Channel:
    """The channel called `name` (default: EMAIL_BACKEND); the error lists those there are."""
    runtime = runtime or current()
    name = name or runtime.settings_for(PLUGIN).email_backend
    channels = registered_channels(runtime)
    if name not in channels:
        raise ConfigError(
            f"EMAIL_BACKEND={name!r}: no such notification channel; "
            f"channels there are: {', '.join(sorted(channels)) or '(none)'}"
        )
    return channels[name]
