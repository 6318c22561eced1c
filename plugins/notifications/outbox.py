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

Keys live in namespaces, so that no value a caller passes can name a key that
banktasks uses itself (a caller could otherwise mark a fraud case's key as sent
and silence its e-mail). The stored key is `<namespace>:<rest>`:

- `caller:<key>`: the `idempotency_key` a caller gave (`caller-sha256:<hex>` when
  `caller:<key>` would not fit the column); every caller key lands here.
- `task:<celery task id>` / `args:<sha256>`: derived when no key is given.
- `event:<name>:<id>`: an e-mail a hook of this plugin sends about an event
  (`event:fraud-case:7`). Only `reserve()`, called in the process that runs the
  hook, creates such a row, with the Message-ID of exactly the content it will
  send; a task may claim it only with that same content (`claim(expect=…)`).
  A message that names an event nobody reserved, or with other content, sends
  nothing, so even a raw message on the broker cannot silence or replace an event's e-mail.
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
KEY_COLUMN = 200  # OutboxEntry.idempotency_key is a String(200)
CALLER = "caller:"
CALLER_HASHED = "caller-sha256:"
EVENT = "event:"
LEGACY = "legacy:"


def caller_key(key: str) -> str:
    """The stored key of a caller's `idempotency_key`: `caller:<key>`, or
    `caller-sha256:<hex>` for a key too long for the column with its prefix."""
    stored = CALLER + key
    if len(stored) <= KEY_COLUMN:
        return stored
    return CALLER_HASHED + hashlib.sha256(key.encode("utf-8")).hexdigest()


def event_key(event: str) -> str:
    """The stored key of an event e-mail a hook sends: `event:<name>:<id>`."""
    return EVENT + event


def message_id_of(stored_key: str, domain: str = "banktasks") -> str:
    """The Message-ID of a stored key: `<sha256(stored_key)[:32]@domain>`."""
    return f"<{hashlib.sha256(stored_key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


def message_id_for(key: str, domain: str = "banktasks") -> str:
    """The Message-ID of an e-mail sent with `idempotency_key=key`: the same key always
    gives the same id.

    A resend after a crash between the SMTP hand-off and the database commit
    therefore carries the same Message-ID, so mail systems can collapse it.
    """
    return message_id_of(caller_key(key), domain)


def content_digest(
    *, kind: str, user_id: int | None, subject: str, text: str, html: str | None
) -> str:
    """SHA-256 of everything that decides what an e-mail says and to whom."""
    blob = json.dumps([kind, user_id, subject, text, html], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def event_message_id(key: str, digest: str) -> str:
    """The Message-ID of an event e-mail: from its stored key and its content digest."""
    return message_id_of(f"{key}\n{digest}")


SOURCES = {
    "caller": "caller",
    "caller-sha256": "caller",
    "event": "event",
    "task": "task",
    "args": "args",
    "legacy": "legacy",
}
"""Namespace of a stored key → where the key came from."""


def split_key(stored_key: str) -> tuple[str, str]:
    """(source, key) of a stored key, for people: `caller:welcome:1` → ("caller",
    "welcome:1"), `event:fraud-case:7` → ("event", "fraud-case:7"), `task:<id>` →
    ("task", "<id>"). A row written before the namespaces existed → ("legacy", key)."""
    namespace, sep, rest = stored_key.partition(":")
    if not sep or namespace not in SOURCES:
        return "legacy", stored_key
    if namespace == "caller-sha256":
        return "caller", f"sha256:{rest}"
    return SOURCES[namespace], rest


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
    """The outcome of `claim()`: `claimed` (send now), `sent` (duplicate), `busy`, and for
    event keys `superseded` (reserved for other content) or `unreserved` (no such row)."""

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


def _new_row(
    key: str, kind: str, user_id: int | None, subject: str, message_id: str, now: datetime
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "kind": kind,
        "user_id": user_id,
        "subject": subject,
        "status": OutboxStatus.pending.value,
        "attempts": 0,
        "message_id": message_id,
        "created_at": now,
    }


def reserve(
    db: Database,
    key: str,
    *,
    kind: str,
    user_id: int | None,
    subject: str,
    message_id: str,
    now: datetime | None = None,
) -> None:
    """Record that this process is about to queue the e-mail `message_id` for event `key`.

    Creates the row (pending, 0 attempts) or, while it is not `sent` yet, points it at
    the newest content (a re-run of a report before its first e-mail went out); a key
    already `sent` is left alone, so the task will find it a duplicate.
    """
    now = now or utcnow()
    with db.session() as session:
        # A row a caller wrote under this very string before the namespaces existed (its
        # Message-ID is that of the bare key; an event's never is) is moved aside.
        session.execute(
            update(OutboxEntry)
            .where(
                OutboxEntry.idempotency_key == key,
                OutboxEntry.message_id == message_id_of(key),
            )
            .values(idempotency_key=LEGACY + key)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            _insert_if_absent(db.dialect, _new_row(key, kind, user_id, subject, message_id, now))
        )
        session.execute(
            update(OutboxEntry)
            .where(
                OutboxEntry.idempotency_key == key,
                OutboxEntry.status != OutboxStatus.sent.value,
                OutboxEntry.message_id != message_id,
            )
            .values(message_id=message_id, kind=kind, user_id=user_id, subject=subject)
            .execution_options(synchronize_session=False)
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
    expect: str | None = None,
) -> Claim:
    """Create the key's row if needed and lease it for one attempt (see module docstring).

    With `expect` (event keys) the row is never created here: it must exist (made by
    `reserve()`) and carry the Message-ID `expect`, else the outcome is `unreserved`
    or `superseded` and nothing may be sent.
    """
    now = now or utcnow()
    with db.session() as session:
        if expect is None:
            row_values = _new_row(key, kind, user_id, subject, message_id_of(key), now)
            session.execute(_insert_if_absent(db.dialect, row_values))
        conditions = [
            OutboxEntry.idempotency_key == key,
            OutboxEntry.status != OutboxStatus.sent.value,
            or_(OutboxEntry.locked_until.is_(None), OutboxEntry.locked_until <= now),
        ]
        if expect is not None:
            conditions.append(OutboxEntry.message_id == expect)
        won = cast(
            CursorResult[Any],
            session.execute(
                update(OutboxEntry)
                .where(*conditions)
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
        ).one_or_none()
    if row is None:
        return Claim("unreserved", key, expect or "", 0)
    if won == 1:
        return Claim("claimed", key, row.message_id, row.attempts)
    if row.status == OutboxStatus.sent.value:
        return Claim("sent", key, row.message_id, row.attempts, sent_at=row.sent_at)
    if expect is not None and row.message_id != expect:
        return Claim("superseded", key, row.message_id, row.attempts)
    wait = (row.locked_until - now).total_seconds() if row.locked_until else 0.0
    return Claim("busy", key, row.message_id, row.attempts, retry_after=max(wait, 1.0))


def mark_sent(
    db: Database, key: str, *, recipient: str, channel: str, message_id: str | None = None
) -> None:
    """Record a successful hand-off: status `sent`, `sent_at`, no error, lease dropped, and
    the Message-ID that went out (an event re-announced meanwhile may point elsewhere)."""
    values: dict[str, Any] = {
        "status": OutboxStatus.sent.value,
        "sent_at": utcnow(),
        "recipient": recipient,
        "channel": channel,
        "error": None,
        "locked_until": None,
    }
    if message_id is not None:
        values["message_id"] = message_id
    with db.session() as session:
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.idempotency_key == key)
            .values(**values)
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
