"""The shapes other packages write against: `Channel`, `Message` and the two failures.

A channel package (a Slack webhook, an SMS gateway, …) implements `Channel`,
receives a `Message`, and raises `TemporaryFailure` (retry with backoff) or
`PermanentFailure` (fail at once). Import them from `plugins.notifications`.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol, runtime_checkable

from core import BanktasksError
from core.db import utcnow
from plugins.notifications.validation import LINE_BREAKS, bare_address

__all__ = ["Channel", "Message", "NotificationError", "PermanentFailure", "TemporaryFailure"]


class NotificationError(BanktasksError):
    """Base class of the errors the notifications plugin raises on purpose."""


class TemporaryFailure(NotificationError):
    """Delivery failed for a reason that may go away (server down, timeout, SMTP 4xx).

    Raise it from a channel's `send()`: the task retries with exponential backoff
    (5 retries). `retry_after` (seconds) asks for a minimum wait before the next
    try, e.g. from a `Retry-After` header; it is capped by the backoff maximum.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFailure(NotificationError):
    """Delivery can never succeed as asked (SMTP 5xx, unknown or inactive user, no address).

    The task fails at once, without retrying; the outbox row is marked `failed`
    with this message. Any other exception from a channel is treated the same way.
    """


_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':' (RFC 5322 ftext)
_RESERVED = {
    "from",
    "to",
    "cc",
    "bcc",
    "sender",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}  # set by `to_email()` itself, or recipients this message is not sent to


def _no_line_breaks(what: str, value: str) -> None:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"Message {what} contains a line break; header injection is refused")


@dataclass
class Message:
    """One e-mail to one recipient. `html`, when given, makes it multipart/alternative.

    `to` and `from_` are addresses (`from_` may carry a display name:
    `Bank <noreply@bank.example>`); `headers` are extra headers such as
    `Auto-Submitted`. Values with CR/LF are refused (header injection).
    """

    to: str
    from_: str
    subject: str
    text: str
    html: str | None = None
    message_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("to", "from_", "subject", "message_id"):
            _no_line_breaks(what, getattr(self, what))
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED:
                raise ValueError(f"Message header name {name!r} is not allowed")
            _no_line_breaks(f"header {name}", value)

    @property
    def envelope_from(self) -> str:
        """The bare sender address (SMTP MAIL FROM)."""
        return bare_address(self.from_)

    @property
    def envelope_to(self) -> str:
        """The bare recipient address (SMTP RCPT TO)."""
        return bare_address(self.to)

    def to_email(self) -> EmailMessage:
        """The MIME message: text/plain, or multipart/alternative (text + html)."""
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.from_
        msg["To"] = self.to
        msg["Subject"] = self.subject
        msg["Date"] = format_datetime(utcnow())
        if self.message_id:
            msg["Message-ID"] = self.message_id
        for name, value in self.headers.items():
            msg[name] = value
        for name, header in msg.items():  # what `email` decoded (RFC 2047) and will write
            if any(c in str(header) for c in LINE_BREAKS):
                raise ValueError(f"Message header {name} decodes to a line break; refused")
        msg.set_content(self.text)
        if self.html is not None:
            msg.add_alternative(self.html, subtype="html")
        return msg

    def as_bytes(self) -> bytes:
        """The message as RFC 5322 bytes (CRLF line endings), ready for a file or a socket."""
        return self.to_email().as_bytes()


@runtime_checkable
class Channel(Protocol):
    """Something that can deliver a Message: `name` and `send(message) -> None`.

    `name` is what EMAIL_BACKEND selects: lower-case letters, digits, `_` and `-`
    (`core.validators.is_name`). `send` returns once the message is handed over;
    it raises `TemporaryFailure` to have the task retried, `PermanentFailure`
    (or any other exception) to fail at once.
    """

    name: str

    def send(self, message: Message) -> None:
        """Deliver the message, or raise TemporaryFailure (retry) / anything else (fail)."""
        ...
