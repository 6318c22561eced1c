"""The outbox: claim an idempotency key, then record what happened to it.

Sending is idempotent per key:

1. `claim()` inserts the key's row if it is new (`INSERT … ON CONFLICT DO NOTHING`,
   on SQLite and PostgreSQL alike) and then takes a short lease on it with one
   conditional `UPDATE` (row not `sent`, no live lease). Exactly one worker wins
   the lease; a row already `sent` is reported as a duplicate; a row leased by
   another worker is reported busy (that delivery retries after the lease).
2. The winner sends, then `mark_sent()` or `mark_failed()` records the outcome
   and drops the lease.

The remaining window is at-least-once: if a worker dies after the server
accepted the message but before `mark_sent()` committed, the key is sent again
once the lease expires, with the same Message-ID (it is derived from the key).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update

from core.db import Database, dialect_insert, utcnow
from core.logging import redact_text
from plugins.notifications.models import OutboxEntry, OutboxStatus

MAX_ERROR = 2000


def message_id_for(key: str, domain: str = "banktasks") -> str:
    """The Message-ID for an idempotency key: the same key always gives the same id.

    A resend after a crash between the SMTP hand-off and the database commit
    therefore carries the same Message-ID, so mail systems can collapse it.
    """
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


def derive_key(task_name: str, task_id: str | None, payload: dict[str, Any]) -> str:
    """The default idempotency key: the Celery task id, or a hash of the arguments.

    Inside a worker a retried or redelivered task keeps its id, so it keeps its key.
    Called outside a worker, the same arguments give the same key.
    """
    if task_id:
        return f"task:{task_id}"
    blob = json.dumps({"task": task_name, **payload}, sort_keys=True, default=str)
    return f"args:{hashlib.sha256(blob.encode('utf-8')).hexdigest()}"


def describe(exc: BaseException) -> str:
    """`Type: message`, addresses and account numbers masked, at most 2000 characters."""
    text = redact_text(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."


@dataclass(frozen=True)
class Claim:
    """The outcome of `claim()`: `claimed` (send now), `sent` (duplicate) or `busy`."""

    outcome: str
    key: str
    message_id: str
    attempts: int
    sent_at: datetime | None = None
    retry_after: float | None = None


def _insert_if_absent(dialect: str, values: dict[str, Any]) -> Any:
    return (
        dialect_insert(dialect)(OutboxEntry)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


def claim(
    db: Database,
    key: str,
    *,
    kind: str,
    user_id: int | None,
    subject: str,
    lease: timedelta,
    now: datetime | None = None,
) -> Claim:
    """Create the key's row if needed and lease it for one attempt (see module docstring)."""
    now = now or utcnow()
    message_id = message_id_for(key)
    with db.session() as session:
        session.execute(
            _insert_if_absent(
                db.dialect,
                {
                    "idempotency_key": key,
                    "kind": kind,
                    "user_id": user_id,
                    "subject": subject,
                    "status": OutboxStatus.pending.value,
                    "attempts": 0,
                    "message_id": message_id,
                    "created_at": now,
                },
            )
        )
        won = cast(
            CursorResult[Any],
            session.execute(
                update(OutboxEntry)
                .where(
                    OutboxEntry.idempotency_key == key,
                    OutboxEntry.status != OutboxStatus.sent.value,
                    or_(OutboxEntry.locked_until.is_(None), OutboxEntry.locked_until <= now),
                )
                .values(
                    attempts=OutboxEntry.attempts + 1,
                    status=OutboxStatus.pending.value,
                    locked_until=now + lease,
                )
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        row = session.execute(
            select(
                OutboxEntry.status,
                OutboxEntry.message_id,
                OutboxEntry.attempts,
                OutboxEntry.sent_at,
                OutboxEntry.locked_until,
            ).where(OutboxEntry.idempotency_key == key)
        ).one()
    if won == 1:
        return Claim("claimed", key, row.message_id, row.attempts)
    if row.status == OutboxStatus.sent.value:
        return Claim("sent", key, row.message_id, row.attempts, sent_at=row.sent_at)
    wait = (row.locked_until - now).total_seconds() if row.locked_until else 0.0
    return Claim("busy", key, row.message_id, row.attempts, retry_after=max(wait, 1.0))


def mark_sent(db: Database, key: str, *, recipient: str, channel: str) -> None:
    """Record a successful hand-off: status `sent`, `sent_at`, no error, lease dropped."""
    with db.session() as session:
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.idempotency_key == key)
            .values(
                status=OutboxStatus.sent.value,
                sent_at=utcnow(),
                recipient=recipient,
                channel=channel,
                error=None,
                locked_until=None,
            )
            .execution_options(synchronize_session=False)
        )


def mark_failed(
    db: Database,
    key: str,
    error: str,
    *,
    final: bool,
    recipient: str | None = None,
    channel: str | None = None,
) -> None:
    """Record a failed attempt and drop the lease; `final` sets status `failed`, else `pending`."""
    values: dict[str, Any] = {
        "status": (OutboxStatus.failed if final else OutboxStatus.pending).value,
        "error": error[:MAX_ERROR],
        "locked_until": None,
    }
    if recipient is not None:
        values["recipient"] = recipient
    if channel is not None:
        values["channel"] = channel
    with db.session() as session:
        session.execute(
            update(OutboxEntry)
            .where(
                OutboxEntry.idempotency_key == key,
                OutboxEntry.status != OutboxStatus.sent.value,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def entry(db: Database, key: str) -> OutboxEntry | None:
    """The outbox row of a key (detached), or None."""
    with db.session() as session:
        return session.scalars(
            select(OutboxEntry).where(OutboxEntry.idempotency_key == key)
        ).one_or_none()
