"""The outbox table: one row per idempotency key, the record that makes sending idempotent."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class OutboxStatus(enum.StrEnum):
    """Where an outbox entry is: waiting to be (re)sent, sent, or failed for good."""

    pending = "pending"
    sent = "sent"
    failed = "failed"


class OutboxEntry(Base):
    """One e-mail the plugin was asked to send, keyed by its idempotency key.

    `idempotency_key` is stored in its namespace (`caller:<key>`, `event:<name>:<id>`,
    `task:<id>`, `args:<sha256>`; see `plugins.notifications.outbox`). For an `event:`
    row `message_id` is derived from the key and the content its hook reserved.

    `recipient` holds the full address (needed to send; never logged). `error`
    says why the last attempt failed (addresses in it are masked). `locked_until`
    is the lease of the worker that is sending right now, so that two deliveries
    of the same task cannot both send.
    """

    __tablename__ = "notifications_outbox"
    __table_args__ = (Index("ix_notifications_outbox_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="user")  # user | admin
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    recipient: Mapped[str | None] = mapped_column(String(254), nullable=True)
    subject: Mapped[str] = mapped_column(String(998))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.pending.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(50), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def __repr__(self) -> str:
        return (
            f"<OutboxEntry {self.id} key={self.idempotency_key!r} status={self.status} "
            f"attempts={self.attempts}>"
        )
