"""Suppressions: silence one rule for one account or one counterparty until a moment.

While a suppression is active (not lifted, `until` in the future) the analysis still
stores the alerts it matches, with status `suppressed` and their `suppression_id`:
they are counted (task result `suppressed`, `suppressed_by_rule`; `banktasks alerts
list --status suppressed`), never silently dropped, but they join no case, add
nothing to a risk score and call no hook. `suppressed` is final: lifting the
suppression (or its expiry) makes the next hits alert normally again; an alert
already stored as suppressed stays so (its dedup key is taken).

A counterparty suppression matches an alert whose transaction's `counterparty`
(read from `current().data`, in one query for the alerts' transaction ids) is
that name, exactly. Alerts with no transaction (velocity, structuring and other
account-level patterns) are matched by account suppressions only.

Every creation and lift writes an audit row (`suppression.created`,
`suppression.lifted`) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import BanktasksError, current, data_scope, get_logger, session_scope
from core.db import utcnow
from core.validators import as_utc
from plugins.fraud.audit import record
from plugins.fraud.models import AlertStatus, FraudAlert, FraudSuppression
from plugins.fraud.rules import collect_rules

log = get_logger(__name__)

ID_CHUNK = 500
"""Ids per IN list when reading counterparties."""


class SuppressionError(BanktasksError, ValueError):
    """A suppression was asked with bad input (unknown rule, past date, no reason, …)."""


class SuppressionNotFoundError(BanktasksError, LookupError):
    """No suppression has that id."""


def _clean(value: str | None, what: str, example: str) -> str:
    text = (value or "").strip()
    if not text:
        raise SuppressionError(f"{what} is empty: give one, e.g. {example}")
    return text


def create_suppression(
    rule: str,
    until: datetime,
    reason: str,
    actor: str,
    *,
    account_id: int | None = None,
    counterparty: str | None = None,
    now: datetime | None = None,
) -> FraudSuppression:
    """Suppress `rule`'s alerts for one account OR one counterparty until `until`.

    `until` is taken as UTC when naive and must be in the future; `rule` must be a
    registered rule; `reason` and `actor` must not be empty. Raises SuppressionError
    (nothing written) otherwise. Writes the suppression and its `suppression.created`
    audit row in one transaction; returns the (detached) row.
    """
    names = {c.name for c in collect_rules(current().plugins)}
    if rule not in names:
        raise SuppressionError(
            f"unknown fraud rule {rule!r}; registered rules: {', '.join(sorted(names))}"
        )
    if (account_id is None) == (counterparty is None):
        raise SuppressionError(
            "give exactly one of an account id or a counterparty to suppress the rule for"
        )
    if counterparty is not None:
        counterparty = _clean(counterparty, "the counterparty", '"ACME Ltd"')
    reason = _clean(reason, "the reason", '"known payroll provider, checked by J. Doe"')
    actor = _clean(actor, "who suppresses (actor)", "jdoe")
    moment = now or utcnow()
    until = as_utc(until)
    if until <= moment:
        raise SuppressionError(
            f"until={until.isoformat()} is not in the future (now {moment.isoformat()}): "
            "give a later date"
        )
    with session_scope() as session:
        row = FraudSuppression(
            rule=rule,
            account_id=account_id,
            counterparty=counterparty,
            until=until,
            reason=reason,
            created_by=actor,
            created_at=moment,
        )
        session.add(row)
        session.flush()
        record(session, actor, "suppression.created", "suppression", row.id, row.as_dict(), moment)
    log.info("fraud_suppression_created", suppression_id=row.id, rule=rule, actor=actor)
    return row


def lift_suppression(suppression_id: int, actor: str) -> FraudSuppression:
    """End a suppression now (lifted_at, lifted_by), with its `suppression.lifted` audit row.

    Raises SuppressionNotFoundError, or SuppressionError when it was already lifted (a
    conditional UPDATE: two people lifting it at once cannot both do it).
    """
    actor = _clean(actor, "who lifts the suppression (actor)", "jdoe")
    moment = utcnow()
    with session_scope() as session:
        result: Any = session.execute(
            update(FraudSuppression)
            .where(FraudSuppression.id == suppression_id, FraudSuppression.lifted_at.is_(None))
            .values(lifted_at=moment, lifted_by=actor)
            .execution_options(synchronize_session=False)
        )
        row = session.get(FraudSuppression, suppression_id, populate_existing=True)
        if row is None:
            raise SuppressionNotFoundError(f"fraud suppression #{suppression_id} does not exist")
        if not result.rowcount:
            raise SuppressionError(
                f"fraud suppression #{suppression_id} was already lifted "
                f"(at {row.lifted_at.isoformat() if row.lifted_at else '?'} by {row.lifted_by})"
            )
        record(
            session,
            actor,
            "suppression.lifted",
            "suppression",
            suppression_id,
            {"before": {"lifted_at": None}, "after": {"lifted_at": moment.isoformat()}},
            moment,
        )
    log.info("fraud_suppression_lifted", suppression_id=suppression_id, actor=actor)
    return row


def active_suppressions(
    session: Session, rules: Iterable[str], now: datetime
) -> list[FraudSuppression]:
    """The suppressions of `rules` active at `now` (not lifted, until after now): one query."""
    names = sorted(set(rules))
    if not names:
        return []
    query = select(FraudSuppression).where(
        FraudSuppression.rule.in_(names),
        FraudSuppression.lifted_at.is_(None),
        FraudSuppression.until > now,
    )
    return list(session.scalars(query))


def has_counterparty_suppressions(session: Session, rules: Iterable[str], now: datetime) -> bool:
    """Is any counterparty suppression of `rules` active at `now`?"""
    return any(s.counterparty is not None for s in active_suppressions(session, rules, now))


def counterparties(session: Session, transaction_ids: Iterable[int]) -> dict[int, str]:
    """Counterparty by transaction id, read where the transactions live (`current().data`):
    one query per 500 ids; transactions without a counterparty are left out."""
    ids = sorted(set(transaction_ids))
    if not ids:
        return {}
    transactions = current().data.transactions
    found: dict[int, str] = {}
    with data_scope(session) as data:
        for start in range(0, len(ids), ID_CHUNK):
            query = select(transactions.c.id, transactions.c.counterparty).where(
                transactions.c.id.in_(ids[start : start + ID_CHUNK]),
                transactions.c.counterparty.is_not(None),
            )
            found.update({tx: name for tx, name in data.execute(query)})
    return found


def apply_suppressions(
    rows: list[dict[str, Any]],
    suppressions: list[FraudSuppression],
    transaction_counterparties: dict[int, str],
) -> None:
    """Mark the alert rows (before insert) an active suppression matches: status
    `suppressed` and `suppression_id` (the lowest id when several match). Pure Python over
    what was read: no query."""
    by_account: dict[tuple[str, int], int] = {}
    by_counterparty: dict[tuple[str, str], int] = {}
    for s in sorted(suppressions, key=lambda s: -s.id):
        if s.account_id is not None:
            by_account[(s.rule, s.account_id)] = s.id
        elif s.counterparty is not None:
            by_counterparty[(s.rule, s.counterparty)] = s.id
    if not by_account and not by_counterparty:
        return
    for row in rows:
        match = by_account.get((row["rule"], row["account_id"]))
        if match is None and row.get("transaction_id") is not None:
            name = transaction_counterparties.get(row["transaction_id"])
            if name is not None:
                match = by_counterparty.get((row["rule"], name))
        if match is not None:
            row["status"] = AlertStatus.suppressed.value
            row["suppression_id"] = match


def list_suppressions(
    include_inactive: bool = False, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Suppressions newest first, each with `active` and `hits` (alerts it suppressed).

    Only the active ones unless `include_inactive` (lifted and expired ones too).
    """
    moment = now or utcnow()
    hits = (
        select(FraudAlert.suppression_id, func.count().label("hits"))
        .where(FraudAlert.suppression_id.is_not(None))
        .group_by(FraudAlert.suppression_id)
        .subquery()
    )
    query = (
        select(FraudSuppression, func.coalesce(hits.c.hits, 0))
        .outerjoin(hits, hits.c.suppression_id == FraudSuppression.id)
        .order_by(FraudSuppression.id.desc())
    )
    if not include_inactive:
        query = query.where(FraudSuppression.lifted_at.is_(None), FraudSuppression.until > moment)
    with session_scope() as session:
        return [
            {
                **row.as_dict(),
                "active": row.lifted_at is None and row.until > moment,
                "hits": int(count),
            }
            for row, count in session.execute(query)
        ]


__all__ = [
    "SuppressionError",
    "SuppressionNotFoundError",
    "active_suppressions",
    "apply_suppressions",
    "counterparties",
    "create_suppression",
    "has_counterparty_suppressions",
    "lift_suppression",
    "list_suppressions",
]
