"""The append-only audit trail of case, alert and suppression changes (`fraud_audit`).

Every change to a case, an alert's status or a suppression writes one row with `record` in the
transaction that makes the change, so the trail and the change commit (or roll
back) together. The database refuses UPDATE and DELETE on the table (triggers
created with it: `plugins.fraud.models.audit_trigger_ddl`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from core import session_scope
from core.db import utcnow
from plugins.fraud.models import FraudAudit

SYSTEM = "system"
"""The actor of changes the analysis makes (a case opened by new alerts)."""

OBJECT_TYPES = ("case", "alert", "suppression")
"""What an audit row can be about."""


def record(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: int,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Add one audit row in `session`'s transaction (e.g. `case.closed`, with before/after)."""
    record_many(session, [(actor, action, object_type, object_id, details or {})], at)


def record_many(
    session: Session,
    rows: list[tuple[str, str, str, int, dict[str, Any]]],
    at: datetime | None = None,
) -> None:
    """Add several audit rows `(actor, action, object_type, object_id, details)` in one
    INSERT, in `session`'s transaction."""
    if not rows:
        return
    moment = at or utcnow()
    session.execute(
        insert(FraudAudit),
        [
            {
                "at": moment,
                "actor": actor,
                "action": action,
                "object_type": object_type,
                "object_id": object_id,
                "details": details,
            }
            for actor, action, object_type, object_id, details in rows
        ],
    )


def audit_trail(
    object_type: str | None = None,
    object_id: int | None = None,
    limit: int | None = None,
    session: Session | None = None,
) -> list[dict[str, Any]]:
    """Audit rows oldest first (optionally of one object type and id), as dicts.

    `limit` keeps the newest `limit` rows. In `session` when given, else in a new one.
    """
    query = select(FraudAudit).order_by(FraudAudit.id.desc())
    if object_type:
        query = query.where(FraudAudit.object_type == object_type)
    if object_id is not None:
        query = query.where(FraudAudit.object_id == object_id)
    if limit:
        query = query.limit(limit)
    if session is not None:
        return [row.as_dict() for row in reversed(session.scalars(query).all())]
    with session_scope() as own:
        return [row.as_dict() for row in reversed(own.scalars(query).all())]
