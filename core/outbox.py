"""Transactional submission: tasks sent as part of the caller's database transaction.

`task.delay_on_commit(session, ...)` (see `core.factory.BanktasksTask`) writes the
submission into the table `core_task_outbox` through the caller's SQLAlchemy
session, in the caller's transaction, and publishes it right after that
transaction commits. A rollback takes the row with it, so nothing is sent; a
savepoint rolled back takes its rows too: after one, the rows are read back at the
commit and only those found are sent (without one, what was written is sent).

The publish after the commit is the usual path. If it cannot happen (the broker
is down, the process dies between its commit and the publish), the committed row
stays, and `relay()` sends it later with the same task id and arguments; the
default plugin `delivery` runs the relay on beat. A row is deleted once its
message is published, so a row that exists was committed and is not known to be
sent. The window between a publish and the delete of its row can send a message
twice (the relay finds the row): every banktasks task is idempotent per task id
or key, so its effect still happens once.

The outbox lives in banktasks' own database (`DATABASE_URL`): the caller's
session must be bound to it for the relay to see the rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, Text, delete, event, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.errors import TaskArgumentError
from core.logging import get_logger

TABLE = "core_task_outbox"
PENDING_KEY = "banktasks_outbox_pending"
"""Key in `session.info`: task id → (publisher, task, message) of the submissions this
session wrote in its open transaction."""
SAVEPOINT_KEY = "banktasks_outbox_savepoint_rolled_back"
"""Key in `session.info`: a savepoint of the open transaction was rolled back (some of
the submissions may be gone with it: the committed rows are read back)."""
RELAY_BATCH = 500
"""Rows one relay transaction reads, publishes and deletes."""

log = get_logger("banktasks.outbox")

Publisher = Callable[[str, str, list[Any], dict[str, Any], dict[str, Any]], None]
"""`publish(task_name, task_id, args, kwargs, options)`: sends one checked submission."""


class OutboxMessage(Base):
    """A task submission committed with the caller's transaction and not yet published."""

    __tablename__ = TABLE

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    """JSON: {"args": [...], "kwargs": {...}, "options": {...}} as checked at submission."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


def enqueue(
    session: Session,
    task_name: str,
    task_id: str,
    args: list[Any],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    publish: Publisher,
) -> None:
    """Write one checked submission in `session`'s transaction; publish it after the commit.

    `publish` is called for each committed row of this session right after its
    transaction commits (never on a rollback); the row is then deleted. Raises
    TaskArgumentError for a task id already written in this transaction.
    """
    if not isinstance(session, Session):
        raise TaskArgumentError(
            f"{task_name}: delay_on_commit takes the SQLAlchemy Session whose transaction "
            f"the task belongs to, not {type(session).__name__}"
        )
    pending: dict[str, tuple[Publisher, str, str]] = session.info.setdefault(PENDING_KEY, {})
    if task_id in pending:
        raise TaskArgumentError(
            f"{task_name}: task_id={task_id!r} is already submitted in this transaction"
        )
    body = json.dumps({"args": args, "kwargs": kwargs, "options": options}, default=str)
    try:
        session.execute(
            insert(OutboxMessage).values(
                task_id=task_id, task=task_name, message=body, created_at=utcnow()
            )
        )
    except SQLAlchemyError as exc:
        if _missing_table(exc):
            raise TaskArgumentError(
                f"{task_name}: the table {TABLE} does not exist in this session's database; "
                "create it with `banktasks db init` (the session must be bound to "
                "banktasks' DATABASE_URL)"
            ) from exc
        raise
    if not session.info.get("banktasks_outbox_listening"):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_soft_rollback", _after_rollback)
        session.info["banktasks_outbox_listening"] = True
    pending[task_id] = (publish, task_name, body)


def _missing_table(exc: SQLAlchemyError) -> bool:
    text = str(exc).lower()
    return TABLE in text and ("no such table" in text or "does not exist" in text)


def _after_rollback(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the whole transaction
        session.info.pop(PENDING_KEY, None)
        session.info.pop(SAVEPOINT_KEY, None)
    elif previous_transaction.nested and session.info.get(PENDING_KEY):
        session.info[SAVEPOINT_KEY] = True


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the rows are not committed
        return
    pending: dict[str, tuple[Publisher, str, str]] = session.info.pop(PENDING_KEY, None) or {}
    read_back = session.info.pop(SAVEPOINT_KEY, False)
    if not pending:
        return
    bind = session.get_bind()
    engine = getattr(bind, "engine", bind)
    try:
        if read_back:
            publish_rows(engine, list(pending), lambda task_id: pending[task_id][0])
        else:  # every submission of the transaction is committed: publish what was written
            rows = [(task_id, task, body) for task_id, (_, task, body) in pending.items()]
            sent, error = _publish(rows, lambda task_id: pending[task_id][0])
            _delete(engine, sent)
            if error is not None:
                raise error
    except Exception as exc:  # the caller's commit stands: the relay sends the rows later
        log.warning(
            "outbox.publish_deferred",
            tasks=len(pending),
            error=f"{type(exc).__name__}: {exc}"[:300],
        )


def publish_rows(engine: Any, task_ids: list[str], publisher_for: Callable[[str], Any]) -> int:
    """Publish the committed outbox rows among `task_ids`, each with
    `publisher_for(task_id)`, and delete the rows sent; return how many were sent.
    An id without a committed row (rolled back with a savepoint) is skipped."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxMessage.task_id, OutboxMessage.task, OutboxMessage.message).where(
                OutboxMessage.task_id.in_(task_ids)
            )
        ).all()
        conn.rollback()
    sent, error = _publish(rows, publisher_for)
    _delete(engine, sent)
    if error is not None:
        raise error
    return len(sent)


def _delete(engine: Any, task_ids: list[str]) -> None:
    """Delete the rows of submissions that were published."""
    if task_ids:
        with engine.begin() as conn:
            conn.execute(delete(OutboxMessage).where(OutboxMessage.task_id.in_(task_ids)))


def _publish(
    rows: Iterable[Any], publisher_for: Callable[[str], Any]
) -> tuple[list[str], Exception | None]:
    """Publish rows in order until one fails: (ids sent, the error that stopped it)."""
    sent: list[str] = []
    for task_id, task_name, body in rows:
        publish = publisher_for(task_id)
        if publish is None:
            continue
        message = json.loads(body)
        try:
            publish(task_name, task_id, message["args"], message["kwargs"], message["options"])
        except Exception as exc:
            return sent, exc
        sent.append(task_id)
    return sent, None


def relay(engine: Any, publish: Publisher, older_than: float, limit: int = 10_000) -> int:
    """Publish committed outbox rows older than `older_than` seconds (their commit's
    own publish failed or never happened), oldest first, then delete them.

    Rows are taken `RELAY_BATCH` at a time, each batch in one transaction that
    locks its rows on PostgreSQL (`FOR UPDATE SKIP LOCKED`: two relays do not send
    the same rows). Returns how many were published (at most `limit` per call).
    """
    cutoff = utcnow() - timedelta(seconds=older_than)
    done = 0
    while done < limit:
        with engine.begin() as conn:
            query = (
                select(OutboxMessage.task_id, OutboxMessage.task, OutboxMessage.message)
                .where(OutboxMessage.created_at < cutoff)
                .order_by(OutboxMessage.created_at)
                .limit(min(RELAY_BATCH, limit - done))
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if not rows:
                break
            sent, error = _publish(rows, lambda _id: publish)
            if sent:
                conn.execute(delete(OutboxMessage).where(OutboxMessage.task_id.in_(sent)))
        done += len(sent)
        if sent:
            log.info("outbox.relayed", tasks=len(sent))
        if error is not None:
            raise error
        if len(rows) < RELAY_BATCH:
            break
    return done


def pending_count(engine: Any) -> tuple[int, datetime | None]:
    """How many rows wait in the outbox, and when the oldest was written."""
    from sqlalchemy import func

    with engine.connect() as conn:
        count, oldest = conn.execute(select(func.count(), func.min(OutboxMessage.created_at))).one()
    return int(count), oldest
