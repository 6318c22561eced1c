"""Suppressions: silence one rule for one account or one counterparty until a moment.

While a suppression is active (not lifted, `until` in the future) the analysis still
stores the alerts it matches, with status `suppressed` and their `suppression_id`:
they are counted (task result `suppressed`, `suppressed_by_rule`; `banktasks alerts
list --status suppressed`), never silently dropped, but they join no case, add
nothing to a risk score and call no hook. `suppressed` is final: lifting the
suppression (or its expiry) makes the next hits alert normally again; an alert
already stored as suppressed stays so (its dedup key is taken).

A counterparty suppression matches an alert when its name is the `counterparty` of
the alert's transaction (read from `current().data`, in one query per 500 of the
alerts' transaction ids, only when such a suppression is active) or one of the names
its evidence lists under `counterparties` (fan_in_out's: the distinct counterparties
of the burst, at most 50). Names are compared as fan_in_out compares them: trimmed,
in lower case (`normalise_counterparty`); the suppression stores its name so.

A new suppression is refused when an active one already covers the same rule and
account or (normalised) counterparty; `until` must be at most
FRAUD_SUPPRESSION_MAX_DAYS days ahead (to the end of that day, UTC).

Every creation and lift writes an audit row (`suppression.created`,
`suppression.lifted`) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.orm import Session

from core import BanktasksError, current, data_scope, get_logger, session_scope
from core.db import utcnow
from core.validators import as_utc
from plugins.fraud.audit import record
from plugins.fraud.models import AlertStatus, FraudAlert, FraudSuppression
from plugins.fraud.rules import collect_rules, unknown_rules

log = get_logger(__name__)

EVIDENCE_COUNTERPARTIES = "counterparties"
"""The evidence key under which a rule lists the counterparties an alert is about (a list
of names, as fan_in_out does): a counterparty suppression matches any of them."""


class SuppressionError(BanktasksError, ValueError):
    """A suppression was asked with bad input (unknown rule, past date, no reason, …)."""


class SuppressionNotFoundError(BanktasksError, LookupError):
    """No suppression has that id."""


def normalise_counterparty(name: str) -> str:
    """A counterparty as compared: trimmed, in lower case (as fan_in_out compares them)."""
    return name.strip().lower()


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

    `until` is taken as UTC when naive and must be in the future and no later than the
    end (UTC) of the day FRAUD_SUPPRESSION_MAX_DAYS days from now; `rule` must be a
    registered rule; the account must exist; `reason` and `actor` must not be empty; no
    active suppression may already cover the rule for that account or counterparty.
    Raises SuppressionError (nothing written) otherwise. The counterparty is stored
    normalised (`normalise_counterparty`). Writes the suppression and its
    `suppression.created` audit row in one transaction; returns the (detached) row.
    """
    problem = unknown_rules([rule], (c.name for c in collect_rules(current().plugins)))
    if problem:
        raise SuppressionError(problem)
    if (account_id is None) == (counterparty is None):
        raise SuppressionError(
            "give exactly one of an account id or a counterparty to suppress the rule for"
        )
    if account_id is not None and account_id <= 0:
        raise SuppressionError(
            f"account id {account_id} is not valid: give the id of an existing account, e.g. 42"
        )
    given = None
    if counterparty is not None:
        given = _clean(counterparty, "the counterparty", '"ACME Ltd"')
        counterparty = normalise_counterparty(given)
    reason = _clean(reason, "the reason", '"known payroll provider, checked by J. Doe"')
    actor = _clean(actor, "who suppresses (actor)", "jdoe")
    moment = now or utcnow()
    until = as_utc(until)
    if until <= moment:
        raise SuppressionError(
            f"until={until.isoformat()} is not in the future (now {moment.isoformat()}): "
            "give a later date"
        )
    max_days = current().settings_for("fraud").suppression_max_days
    latest = latest_until(moment, max_days)
    if until > latest:
        raise SuppressionError(
            f"until={until.isoformat()} is too far ahead: a suppression lasts at most "
            f"{max_days} days (FRAUD_SUPPRESSION_MAX_DAYS), so until {latest.isoformat()} "
            "at the latest; give an earlier date (and renew it when it expires)"
        )
    if account_id is not None:
        _check_account(account_id)
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
        session.flush()  # the transaction starts with its write (SQLite: no read turned writer)
        if session.get_bind().dialect.name == "postgresql":
            # SQLite's write lock already makes two creations take turns; on PostgreSQL
            # they would not see each other's row: one lock per (rule, target) until commit.
            target = f"{rule}:{account_id if account_id is not None else counterparty}"
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"fraud_suppression:{target}"},
            )
        _refuse_duplicate(session, row, moment)
        details = row.as_dict()
        if given is not None and given != counterparty:
            details["counterparty_given"] = given
        record(session, actor, "suppression.created", "suppression", row.id, details, moment)
    log.info("fraud_suppression_created", suppression_id=row.id, rule=rule, actor=actor)
    return row


def latest_until(moment: datetime, max_days: int) -> datetime:
    """The latest `until` allowed at `moment`: the end (next 00:00 UTC) of the day
    `max_days` days after it, so that a date alone that many days ahead is accepted."""
    day = (as_utc(moment) + timedelta(days=max_days)).date() + timedelta(days=1)
    return datetime.combine(day, time(), UTC)


def _check_account(account_id: int) -> None:
    """Refuse an account id that is not in `current().data.accounts` (one query)."""
    accounts = current().data.accounts
    with data_scope() as data:
        found = data.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first()
    if found is None:
        raise SuppressionError(
            f"account {account_id} does not exist: give the id of an existing account"
        )


def _refuse_duplicate(session: Session, row: FraudSuppression, moment: datetime) -> None:
    """Raise SuppressionError when another active suppression covers `row`'s rule and
    account or counterparty (counterparties are stored normalised)."""
    same: ColumnElement[bool]
    if row.account_id is not None:
        same = FraudSuppression.account_id == row.account_id
        target = f"account {row.account_id}"
    else:
        same = FraudSuppression.counterparty == row.counterparty  # stored normalised
        target = f"counterparty {row.counterparty!r}"
    query = (
        select(FraudSuppression)
        .where(
            FraudSuppression.id != row.id,
            FraudSuppression.rule == row.rule,
            FraudSuppression.lifted_at.is_(None),
            FraudSuppression.until > moment,
            same,
        )
        .order_by(FraudSuppression.id)
        .limit(1)
    )
    other = session.scalars(query).first()
    if other is None:
        return
    if as_utc(other.until) >= as_utc(row.until):
        raise SuppressionError(
            f"fraud suppression #{other.id} already suppresses {row.rule} for {target} "
            f"until {as_utc(other.until).isoformat()}, which covers until={row.until.isoformat()}"
        )
    raise SuppressionError(
        f"fraud suppression #{other.id} already suppresses {row.rule} for {target} "
        f"(until {as_utc(other.until).isoformat()}): to change its date, lift it first with "
        f"`banktasks fraud unsuppress {other.id}`"
    )


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
            raise SuppressionNotFoundError(
                f"fraud suppression #{suppression_id} does not exist; "
                "`banktasks fraud suppressions --all` lists them all"
            )
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


def alert_counterparties(
    row: dict[str, Any], transaction_counterparties: dict[int, str]
) -> set[str]:
    """The normalised counterparties an alert row is about: its transaction's, and those
    its evidence lists under `counterparties`."""
    names: set[str] = set()
    transaction_id = row.get("transaction_id")
    if transaction_id is not None and transaction_id in transaction_counterparties:
        names.add(transaction_counterparties[transaction_id])
    evidence = row.get("evidence")
    listed = evidence.get(EVIDENCE_COUNTERPARTIES) if isinstance(evidence, dict) else None
    if isinstance(listed, list | tuple):
        names.update(name for name in listed if isinstance(name, str))
    return {n for n in map(normalise_counterparty, names) if n}


def apply_suppressions(
    rows: list[dict[str, Any]],
    suppressions: list[FraudSuppression],
    transaction_counterparties: dict[int, str],
) -> None:
    """Mark the alert rows (before insert) an active suppression matches: status
    `suppressed` and `suppression_id` (the lowest id when several match). An account
    suppression matches the alert's account; a counterparty one any of
    `alert_counterparties`. Pure Python over what was read: no query."""
    by_account: dict[tuple[str, int], int] = {}
    by_counterparty: dict[tuple[str, str], int] = {}
    for s in sorted(suppressions, key=lambda s: -s.id):
        if s.account_id is not None:
            by_account[(s.rule, s.account_id)] = s.id
        elif s.counterparty is not None:
            by_counterparty[(s.rule, normalise_counterparty(s.counterparty))] = s.id
    if not by_account and not by_counterparty:
        return
    for row in rows:
        rule = row["rule"]
        matches = [by_account.get((rule, row["account_id"]))]
        if by_counterparty:
            names = alert_counterparties(row, transaction_counterparties)
            matches.extend(by_counterparty.get((rule, name)) for name in names)
        found = [m for m in matches if m is not None]
        if found:
            row["status"] = AlertStatus.suppressed.value
            row["suppression_id"] = min(found)


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
    "EVIDENCE_COUNTERPARTIES",
    "SuppressionError",
    "SuppressionNotFoundError",
    "active_suppressions",
    "alert_counterparties",
    "apply_suppressions",
    "create_suppression",
    "has_counterparty_suppressions",
    "latest_until",
    "lift_suppression",
    "list_suppressions",
    "normalise_counterparty",
]
