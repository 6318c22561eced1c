"""`Message`: what a channel receives, and how it becomes a MIME e-mail."""

from __future__ import annotations

import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime

from core.db import utcnow
from plugins.notifications.validation import LINE_BREAKS, bare_address

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


def message_id_for(key: str, domain: str = "banktasks") -> str:
    """The Message-ID for an idempotency key: the same key always gives the same id.

    A resend after a crash between the SMTP hand-off and the database commit
    therefore carries the same Message-ID, so mail systems can collapse it.
    """
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


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
