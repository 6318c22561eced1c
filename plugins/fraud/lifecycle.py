"""The alert lifecycle: open → investigating → resolved | false_positive (and suppressed,
final from the moment the alert is stored)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from core import BanktasksError, session_scope
from core.db import utcnow
from plugins.fraud.audit import SYSTEM, record
from plugins.fraud.models import AlertStatus, FraudAlert

TRANSITIONS: dict[AlertStatus, frozenset[AlertStatus]] = {
    AlertStatus.open: frozenset(
        {AlertStatus.investigating, AlertStatus.resolved, AlertStatus.false_positive}
    ),
    AlertStatus.investigating: frozenset({AlertStatus.resolved, AlertStatus.false_positive}),
    AlertStatus.resolved: frozenset(),
    AlertStatus.false_positive: frozenset(),
    AlertStatus.suppressed: frozenset(),
}
"""Allowed moves; resolved, false_positive and suppressed are final (an alert is stored as
suppressed by the analysis, never moved there: lift the suppression to hear of new hits)."""

CLOSED = (AlertStatus.resolved, AlertStatus.false_positive, AlertStatus.suppressed)
"""Statuses that end an alert's life: not unresolved, not in a risk score (resolved_at is set
on resolved and false_positive; a suppressed alert never was open)."""

UNRESOLVED = (AlertStatus.open, AlertStatus.investigating)
"""Statuses of an alert still to be worked: they count in risk scores."""


class AlertNotFoundError(BanktasksError, LookupError):
    """No fraud alert has that id."""


class AlertTransitionError(BanktasksError, ValueError):
    """The alert's current status does not allow the requested one."""


def _change(session: Session, alert_id: int, target: AlertStatus, actor: str) -> FraudAlert:
    sources = [s.value for s, targets in TRANSITIONS.items() if target in targets]
    values: dict[str, object] = {"status": target.value}
    if target in CLOSED:
        values["resolved_at"] = utcnow()
    # A conditional UPDATE: two operators racing cannot both move the same alert.
    result: Any = session.execute(
        update(FraudAlert)
        .where(FraudAlert.id == alert_id, FraudAlert.status.in_(sources))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    changed = result.rowcount
    alert = session.get(FraudAlert, alert_id, populate_existing=True)
    if alert is None:
        raise AlertNotFoundError(f"fraud alert #{alert_id} does not exist")
    if not changed:
        allowed = ", ".join(sorted(TRANSITIONS[AlertStatus(alert.status)])) or "nothing (final)"
        raise AlertTransitionError(
            f"fraud alert #{alert_id} is {alert.status}; it cannot become {target.value} "
            f"(from {alert.status} it can become: {allowed})"
        )
    record(
        session,
        actor,
        f"alert.{target.value}",
        "alert",
        alert_id,
        {"rule": alert.rule, "case_id": alert.case_id, "status": target.value},
    )
    return alert


def change_status(alert_id: int, target: AlertStatus | str, actor: str = SYSTEM) -> FraudAlert:
    """Move an alert to `target` if its lifecycle allows it; return the updated row.

    The change and its audit row (`alert.<status>`, by `actor`) commit together."""
    with session_scope() as session:
        return _change(session, alert_id, AlertStatus(target), actor)


def investigate_alert(alert_id: int, actor: str = SYSTEM) -> FraudAlert:
    """open → investigating (audited as `alert.investigating` by `actor`)."""
    return change_status(alert_id, AlertStatus.investigating, actor)


def resolve_alert(alert_id: int, false_positive: bool = False, actor: str = SYSTEM) -> FraudAlert:
    """open|investigating → resolved (or false_positive); sets resolved_at (audited by
    `actor`)."""
    target = AlertStatus.false_positive if false_positive else AlertStatus.resolved
    return change_status(alert_id, target, actor)
