"""What a channel raises when it cannot deliver: temporary (retry) or permanent (fail now)."""

from __future__ import annotations

from core import BanktasksError


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
