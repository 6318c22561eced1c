"""Cases and risk scores: at most one open case per customer, which new alerts join.

A customer is a user (`accounts.user_id`): the alerts of all their accounts go to
one case. A case goes open → investigating (`assign_case`) → closed (`close_case`,
with a resolution and a note); closing it resolves its open and investigating
alerts, and the customer's next alert opens a new case. `fraud_cases.open_user_id`
(the user while the case is not closed, NULL after) is UNIQUE, so the database
keeps two analyses racing from opening two cases for one customer.

Risk scores (`account_scores`, `case_scores`) add up FRAUD_RISK_WEIGHTS over the
open and investigating alerts (suppressed, resolved and false-positive ones count
nothing), with GROUP BY queries.

Every change to a case writes one `fraud_audit` row in the same transaction.
Accounts are read where they live (`current().data`, maybe a bank's table in
another database), in their own query: never joined with fraud tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core import BanktasksError, current, get_logger, session_scope
from core.db import dialect_insert, utcnow
from plugins.fraud.audit import SYSTEM, audit_trail, record, record_many
from plugins.fraud.bankdata import account_numbers, chunks, customer_emails, masked
from plugins.fraud.lifecycle import UNRESOLVED
from plugins.fraud.models import (
    SEVERITIES,
    AlertStatus,
    CaseResolution,
    CaseStatus,
    FraudAlert,
    FraudCase,
    severity_rank,
)
from plugins.fraud.settings import FraudSettings

log = get_logger(__name__)

NOT_CLOSED = (CaseStatus.open.value, CaseStatus.investigating.value)
"""Statuses of a case that new alerts join."""


class CaseNotFoundError(BanktasksError, LookupError):
    """No fraud case has that id."""


class CaseTransitionError(BanktasksError, ValueError):
    """The case's current status does not allow the requested change."""


@dataclass
class CaseWork:
    """What `open_cases` did: the cases it opened, and those to announce with
    on_fraud_case_opened (each with the alert that makes it worth announcing)."""

    opened: list[FraudCase] = field(default_factory=list)
    announce: list[tuple[FraudCase, FraudAlert]] = field(default_factory=list)


def open_cases(
    session: Session,
    alerts: list[FraudAlert],
    owners: dict[int, int],
    now: datetime,
    min_severity: str = SEVERITIES[0],
) -> CaseWork:
    """Attach new alerts to their customer's open case, opening one where there is none,
    and pick the cases to announce.

    For the engine's write phase, in its transaction: suppressed alerts and alerts whose
    account has no known owner are left alone. Per batch: one INSERT … ON CONFLICT
    (open_user_id) DO NOTHING for every customer at hand (RETURNING the cases it
    opened), one SELECT of their open cases, one UPDATE (executemany) of the alerts'
    case_id, one INSERT of audit rows (actor `system`): `case.opened`, `case.alerts_added`
    (the ids of the alerts that joined each case, the opening one included) and
    `case.announced`.

    A case is announced once: when it first holds an alert at or above `min_severity`
    (FRAUD_ALERT_MIN_SEVERITY), with the first such alert (lowest id), whether the case
    was opened now or by an earlier, lower alert. One conditional UPDATE of
    `announced_at` (still NULL) picks them, so two analyses never announce one case twice.
    """
    work = CaseWork()
    live = [
        a for a in alerts if a.status != AlertStatus.suppressed.value and a.account_id in owners
    ]
    if not live:
        return work
    users = sorted({owners[a.account_id] for a in live})
    insert = (
        dialect_insert(session.get_bind().dialect.name)(FraudCase)
        .on_conflict_do_nothing(index_elements=["open_user_id"])
        .returning(FraudCase.id)
    )
    opened: set[int] = set()
    case_of: dict[int, FraudCase] = {}
    for chunk in chunks(users):
        # Twice at most: a case closed between this INSERT (which found it open) and the
        # SELECT is gone from the SELECT; the second INSERT opens the customer a new one.
        # FOR UPDATE holds the cases found until commit, so a close waits for this run
        # and then closes (and resolves) the alerts it attached too.
        missing = chunk
        for _ in range(2):
            rows = [
                {
                    "user_id": user,
                    "open_user_id": user,
                    "status": CaseStatus.open.value,
                    "opened_at": now,
                    "updated_at": now,
                }
                for user in missing
            ]
            opened.update(session.scalars(insert, rows).all())
            query = select(FraudCase).where(FraudCase.open_user_id.in_(missing)).with_for_update()
            case_of.update({c.user_id: c for c in session.scalars(query)})
            missing = [user for user in missing if user not in case_of]
            if not missing:
                break
    updates = []
    first: dict[int, FraudAlert] = {}
    joined: dict[int, list[int]] = {}
    worth: dict[int, FraudAlert] = {}
    threshold = severity_rank(min_severity)
    for alert in sorted(live, key=lambda a: a.id):
        found = case_of.get(owners[alert.account_id])
        if found is None:  # closed twice during this run: left without a case, logged
            log.warning(
                "fraud_alert_without_case", alert_id=alert.id, user_id=owners[alert.account_id]
            )
            continue
        updates.append({"id": alert.id, "case_id": found.id})
        set_committed_value(alert, "case_id", found.id)
        first.setdefault(found.id, alert)
        joined.setdefault(found.id, []).append(alert.id)
        if severity_rank(alert.severity) >= threshold:
            worth.setdefault(found.id, alert)
    if updates:
        session.execute(update(FraudAlert), updates)
    new = sorted((c for c in case_of.values() if c.id in opened), key=lambda c: c.id)
    rows = [
        (
            SYSTEM,
            "case.opened",
            "case",
            c.id,
            {"user_id": c.user_id, "alert_id": first[c.id].id, "rule": first[c.id].rule},
        )
        for c in new
        if c.id in first
    ]
    rows += [
        (SYSTEM, "case.alerts_added", "case", case_id, {"alert_ids": ids})
        for case_id, ids in sorted(joined.items())
    ]
    work.opened = [c for c in new if c.id in first]
    work.announce = _announce(session, case_of, worth, now)
    rows += [
        (SYSTEM, "case.announced", "case", c.id, {"alert_id": a.id, "severity": a.severity})
        for c, a in work.announce
    ]
    record_many(session, rows, now)
    return work


def _announce(
    session: Session, case_of: dict[int, FraudCase], worth: dict[int, FraudAlert], now: datetime
) -> list[tuple[FraudCase, FraudAlert]]:
    """Mark the cases in `worth` announced (those not announced yet); (case, alert) each."""
    if not worth:
        return []
    by_id = {c.id: c for c in case_of.values()}
    marked: set[int] = set()
    for ids in chunks(worth):
        result = session.execute(
            update(FraudCase)
            .where(FraudCase.id.in_(ids), FraudCase.announced_at.is_(None))
            .values(announced_at=now)
            .returning(FraudCase.id)
            .execution_options(synchronize_session=False)
        )
        marked.update(result.scalars().all())
    for case_id in marked:
        set_committed_value(by_id[case_id], "announced_at", now)
    return [(by_id[case_id], worth[case_id]) for case_id in sorted(marked)]


def _weighted(weights: dict[str, float]) -> ColumnElement[Any]:
    """SUM of each alert's severity weight (unknown severities weigh 0)."""
    return func.coalesce(
        func.sum(
            case(
                *[(FraudAlert.severity == name, weight) for name, weight in weights.items()],
                else_=0.0,
            )
        ),
        0.0,
    )


def _weights(weights: dict[str, float] | None) -> dict[str, float]:
    if weights is not None:
        return weights
    settings: FraudSettings = current().settings_for("fraud")
    return dict(settings.risk_weights)


def account_scores(
    session: Session,
    account_ids: Iterable[int] | None = None,
    weights: dict[str, float] | None = None,
) -> dict[int, float]:
    """Account id → risk score: the sum of FRAUD_RISK_WEIGHTS (or `weights`) over its open
    and investigating alerts. One GROUP BY query (per 500 ids when `account_ids` is
    given); accounts without such alerts are left out (score 0)."""
    chosen = _weights(weights)
    base = (
        select(FraudAlert.account_id, _weighted(chosen))
        .where(FraudAlert.status.in_([s.value for s in UNRESOLVED]))
        .group_by(FraudAlert.account_id)
    )
    if account_ids is None:
        return {account: float(score) for account, score in session.execute(base)}
    scores: dict[int, float] = {}
    for ids in chunks(account_ids):
        query = base.where(FraudAlert.account_id.in_(ids))
        scores.update({account: float(score) for account, score in session.execute(query)})
    return scores


def case_scores(
    session: Session,
    case_ids: Iterable[int] | None = None,
    weights: dict[str, float] | None = None,
) -> dict[int, dict[str, float]]:
    """Case id → `{"alerts": n, "score": s}`: all its alerts, and the sum of FRAUD_RISK_WEIGHTS
    over those open or investigating. One GROUP BY query (per 500 ids when given)."""
    chosen = _weights(weights)
    unresolved = FraudAlert.status.in_([s.value for s in UNRESOLVED])
    score = func.coalesce(
        func.sum(
            case(
                *[
                    (unresolved & (FraudAlert.severity == name), weight)
                    for name, weight in chosen.items()
                ],
                else_=0.0,
            )
        ),
        0.0,
    )
    base = (
        select(FraudAlert.case_id, func.count(), score)
        .where(FraudAlert.case_id.is_not(None))
        .group_by(FraudAlert.case_id)
    )
    rows: list[Any] = []
    if case_ids is None:
        rows = list(session.execute(base))
    else:
        for ids in chunks(case_ids):
            rows.extend(session.execute(base.where(FraudAlert.case_id.in_(ids))))
    return {case_id: {"alerts": int(n), "score": float(s)} for case_id, n, s in rows}


def _not_found(case_id: int) -> CaseNotFoundError:
    return CaseNotFoundError(
        f"fraud case #{case_id} does not exist; see `banktasks cases list --status open`"
    )


def assign_case(case_id: int, assignee: str, actor: str) -> FraudCase:
    """Give a case to `assignee`; an open case becomes investigating (an investigating one
    can be reassigned). A closed case raises CaseTransitionError. One conditional UPDATE
    and a `case.assigned` audit row, in one transaction; returns the updated case."""
    assignee, actor = assignee.strip(), actor.strip()
    if not assignee:
        raise CaseTransitionError(f"fraud case #{case_id}: give who it is assigned to (--to)")
    if not actor:
        raise CaseTransitionError(f"fraud case #{case_id}: give who assigns it (--by)")
    now = utcnow()
    with session_scope() as session:
        before = session.get(FraudCase, case_id)
        if before is None:
            raise _not_found(case_id)
        was = {"status": before.status, "assignee": before.assignee}
        result: Any = session.execute(
            update(FraudCase)
            .where(FraudCase.id == case_id, FraudCase.status.in_(NOT_CLOSED))
            .values(assignee=assignee, status=CaseStatus.investigating.value, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        row = session.get(FraudCase, case_id, populate_existing=True)
        assert row is not None
        if not result.rowcount:
            raise CaseTransitionError(
                f"fraud case #{case_id} is {row.status}; a closed case cannot be assigned "
                "(the customer's next alert opens a new case)"
            )
        after = {"status": row.status, "assignee": row.assignee}
        record(
            session, actor, "case.assigned", "case", case_id, {"before": was, "after": after}, now
        )
    log.info("fraud_case_assigned", case_id=case_id, actor=actor)
    return row


def close_case(
    case_id: int, resolution: CaseResolution | str, note: str | None, actor: str
) -> FraudCase:
    """Close a case with a resolution (`CaseResolution`) and a note saying what was found
    (required: CaseTransitionError without one).

    Its open and investigating alerts become `false_positive` when the resolution is
    false_positive, else `resolved` (one UPDATE); `open_user_id` becomes NULL, so the
    customer's next alert opens a new case. A closed case raises CaseTransitionError
    (a conditional UPDATE: two people closing it at once cannot both do it). Writes a
    `case.closed` audit row in the same transaction; returns the closed case.
    """
    try:
        chosen = CaseResolution(resolution)
    except ValueError:
        valid = ", ".join(r.value for r in CaseResolution)
        raise CaseTransitionError(f"resolution {resolution!r} is not one of: {valid}") from None
    actor = actor.strip()
    if not actor:
        raise CaseTransitionError(f"fraud case #{case_id}: give who closes it (actor)")
    note = (note or "").strip()
    if not note:
        raise CaseTransitionError(
            f"fraud case #{case_id}: give a note saying what was found (--note), e.g. "
            '"customer confirmed the payments"'
        )
    now = utcnow()
    with session_scope() as session:
        result: Any = session.execute(
            update(FraudCase)
            .where(FraudCase.id == case_id, FraudCase.status.in_(NOT_CLOSED))
            .values(
                status=CaseStatus.closed.value,
                resolution=chosen.value,
                note=note,
                closed_at=now,
                updated_at=now,
                open_user_id=None,
            )
            .returning(FraudCase.user_id)
            .execution_options(synchronize_session=False)
        )
        closed = result.first()
        row = session.get(FraudCase, case_id, populate_existing=True)
        if row is None:
            raise _not_found(case_id)
        if closed is None:
            raise CaseTransitionError(
                f"fraud case #{case_id} is already closed ({row.resolution}); "
                "it cannot be closed again"
            )
        target = (
            AlertStatus.false_positive
            if chosen is CaseResolution.false_positive
            else AlertStatus.resolved
        )
        alerts: Any = session.execute(
            update(FraudAlert)
            .where(
                FraudAlert.case_id == case_id,
                FraudAlert.status.in_([s.value for s in UNRESOLVED]),
            )
            .values(status=target.value, resolved_at=now)
            .execution_options(synchronize_session=False)
        )
        record(
            session,
            actor,
            "case.closed",
            "case",
            case_id,
            {
                "resolution": chosen.value,
                "note": note,
                "alerts_closed": int(alerts.rowcount),
                "alert_status": target.value,
            },
            now,
        )
    log.info("fraud_case_closed", case_id=case_id, resolution=chosen.value, actor=actor)
    return row


def list_cases(
    status: str | None = None, assignee: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest cases first (optionally of one status or assignee), each with its number of
    alerts and its risk score (`case_scores`) and the customer's e-mail (`customer`)."""
    query = select(FraudCase).order_by(FraudCase.id.desc()).limit(limit)
    if status:
        query = query.where(FraudCase.status == CaseStatus(status).value)
    if assignee:
        query = query.where(FraudCase.assignee == assignee)
    with session_scope() as session:
        cases = session.scalars(query).all()
        scores = case_scores(session, [c.id for c in cases])
        customers = customer_emails(session, {c.user_id for c in cases})
        return [
            {
                **c.as_dict(),
                "customer": customers.get(c.user_id),
                **scores.get(c.id, {"alerts": 0, "score": 0.0}),
            }
            for c in cases
        ]


def show_case(case_id: int) -> dict[str, Any]:
    """One case with its alerts (masked account numbers, each account's risk score) and its
    audit trail. Raises CaseNotFoundError."""
    with session_scope() as session:
        row = session.get(FraudCase, case_id)
        if row is None:
            raise _not_found(case_id)
        alerts = session.scalars(
            select(FraudAlert).where(FraudAlert.case_id == case_id).order_by(FraudAlert.id)
        ).all()
        accounts = {a.account_id for a in alerts}
        numbers = account_numbers(session, accounts)
        scores = account_scores(session, accounts)
        totals = case_scores(session, [case_id]).get(case_id, {"alerts": 0, "score": 0.0})
        customer = customer_emails(session, {row.user_id}).get(row.user_id)
        return {
            **row.as_dict(),
            "customer": customer,
            **totals,
            "accounts": {
                str(account): {
                    "account": masked(numbers.get(account)),
                    "score": scores.get(account, 0.0),
                }
                for account in sorted(accounts)
            },
            "alerts": [
                {**a.as_dict(), "account": masked(numbers.get(a.account_id))} for a in alerts
            ],
            "audit": audit_trail("case", case_id, session=session),
        }


__all__ = [
    "CaseNotFoundError",
    "CaseTransitionError",
    "account_scores",
    "assign_case",
    "case_scores",
    "close_case",
    "list_cases",
    "open_cases",
    "show_case",
]
