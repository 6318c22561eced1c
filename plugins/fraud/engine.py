"""Run the selected rules over a window, store new alerts once (suppressed ones marked, the
others joined to their customer's case), emit `on_fraud_alert` and `on_fraud_case_opened`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import BigInteger, func, select, type_coerce
from sqlalchemy.orm import Session

from core import DataTables, Runtime, TaskArgumentError, current, get_logger
from core.db import dialect_insert, to_micros, utcnow
from core.validators import as_utc
from plugins.fraud.api import Finding, Rule, RuleContext, finding_key, rule_settings_hash
from plugins.fraud.bankdata import account_owners, counterparties
from plugins.fraud.cases import open_cases
from plugins.fraud.models import (
    AlertStatus,
    FraudAlert,
    FraudCase,
    FraudSuppression,
    FraudWatermark,
    severity_rank,
)
from plugins.fraud.rules import collect_rules, select_rules
from plugins.fraud.settings import FraudSettings
from plugins.fraud.suppression import active_suppressions, apply_suppressions

log = get_logger(__name__)

WATERMARK = "analyze_fraud_patterns"
TASK = "fraud.analyze_fraud_patterns"
INSERT_CHUNK = 500


def _utc(moment: datetime | None) -> datetime | None:
    """`core.validators.as_utc`, None kept (ValueError when out of range once in UTC)."""
    return None if moment is None else as_utc(moment)


@dataclass
class Window:
    """The window one run analyses, and whether it came from the watermark."""

    since: datetime
    until: datetime
    from_watermark: bool


def resolve_window(
    session: Session,
    settings: FraudSettings,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    task: str = TASK,
) -> Window:
    """Explicit bounds are checked; without any, read the watermark (minus the overlap).

    `task` names the task in the error a bad window raises.
    """
    since, until = _utc(since), _utc(until)
    if since is None and until is None:
        mark = session.get(FraudWatermark, WATERMARK)
        if mark is None:
            start = now - timedelta(days=settings.initial_lookback_days)
        else:
            start = min(mark.analysed_until, now) - timedelta(hours=settings.overlap_hours)
        return Window(start, now, from_watermark=True)
    until = until or now
    since = since or until - timedelta(days=settings.initial_lookback_days)
    if since >= until:
        raise TaskArgumentError(
            f"{task}: since={since.isoformat()} must be before until={until.isoformat()}"
        )
    return Window(since, until, from_watermark=False)


def _insert_statement(dialect: str) -> Any:
    """INSERT … ON CONFLICT (rule, dedup_key) DO NOTHING RETURNING the new rows only."""
    return (
        dialect_insert(dialect)(FraudAlert)
        .on_conflict_do_nothing(index_elements=["rule", "dedup_key"])
        .returning(FraudAlert)
    )


def alert_rows(
    rule: Rule, findings: Iterable[Finding], now: datetime, settings_digest: str | None = None
) -> list[dict[str, Any]]:
    """The rows to insert for one rule's findings: one per dedup key (the first wins).

    Each row records the rule's `version` and `settings_digest`, the `settings_hash` of
    the settings the rule ran with. Neither is part of the dedup key: an alert already
    stored for a `(rule, dedup_key)` is not raised again when the version or the
    settings change.
    """
    rows: dict[str, dict[str, Any]] = {}
    for finding in findings:
        severity = getattr(finding, "severity", None) or rule.severity
        severity_rank(severity)  # refuses an unknown severity, naming the valid ones
        key = finding_key(finding, rule.name)
        rows.setdefault(
            key,
            {
                "rule": rule.name,
                "rule_version": rule.version,
                "settings_hash": settings_digest,
                "account_id": finding.account_id,
                "transaction_id": finding.transaction_id,
                "severity": severity,
                "score": float(finding.score),
                "status": AlertStatus.open.value,
                "evidence": to_jsonable_python(finding.evidence),
                "dedup_key": key,
                "created_at": now,
                "suppression_id": None,
            },
        )
    return list(rows.values())


def insert_alerts(session: Session, rows: list[dict[str, Any]]) -> list[FraudAlert]:
    """Insert alert rows, skipping (rule, dedup key) pairs that exist; return only new rows."""
    statement = _insert_statement(session.get_bind().dialect.name)
    created: list[FraudAlert] = []
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        created.extend(session.scalars(statement, chunk).all())
    return created


def _advance_watermark(session: Session, until: datetime) -> None:
    mark = session.get(FraudWatermark, WATERMARK)
    if mark is None:
        session.add(FraudWatermark(name=WATERMARK, analysed_until=until))
    elif mark.analysed_until < until:
        mark.analysed_until = until


def _scanned(session: Session, window: Window, tables: DataTables) -> int:
    at = type_coerce(tables.transactions.c.created_at, BigInteger)
    query = select(func.count()).where(at >= to_micros(window.since), at < to_micros(window.until))
    return int(session.execute(query).scalar_one())


def _emit(alerts: list[FraudAlert], min_severity: str) -> tuple[int, int]:
    """Call on_fraud_alert for each alert at or above `min_severity`; (notified, failed)."""
    plugins = current().plugins
    threshold = severity_rank(min_severity)
    notified = failed = 0
    for alert in alerts:
        if severity_rank(alert.severity) < threshold:
            continue
        # Each listener on its own: one that fails must not keep the alert from the others.
        outcomes = plugins.call_each("on_fraud_alert", alert=alert)
        if any(outcome.error is not None for outcome in outcomes):
            failed += 1
            log.error("fraud_alert_hook_failed", alert_id=alert.id)
        else:
            notified += 1
    return notified, failed


def _emit_cases(announce: list[tuple[FraudCase, FraudAlert]]) -> int:
    """Call on_fraud_case_opened once per case to announce, with the alert that makes it
    worth announcing; the number of cases for which a listener failed (each listener is
    called on its own)."""
    plugins = current().plugins
    failed = 0
    for case, alert in announce:
        outcomes = plugins.call_each("on_fraud_case_opened", case=case, alert=alert)
        if any(outcome.error is not None for outcome in outcomes):
            failed += 1
            log.error("fraud_case_hook_failed", case_id=case.id, alert_id=alert.id)
    return failed


@dataclass(frozen=True)
class ActiveRule:
    """A rule ready to run, with the settings of the plugin that registered it and the
    `rule_settings_hash` of what it reads, which its alerts record."""

    rule: Rule
    settings: Any
    settings_hash: str


def active_rules(runtime: Runtime, settings: FraudSettings) -> list[ActiveRule]:
    """The registered rules after FRAUD_RULES / FRAUD_DISABLE_RULES (ConfigError if unknown),
    each with its own plugin's settings (`runtime.settings_for(plugin)`)."""
    chosen = select_rules(collect_rules(runtime.plugins), settings)
    active = []
    for contribution in chosen:
        own = runtime.settings_for(contribution.plugin)
        digest = rule_settings_hash(contribution.obj, own, settings)
        active.append(ActiveRule(contribution.obj, own, digest))
    return active


@dataclass
class Outcome:
    """What one analysis did (turned into the task's JSON result)."""

    window: Window
    scanned: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    findings: int = 0
    notified: int = 0
    notify_failed: int = 0
    suppressed_by_rule: dict[str, int] = field(default_factory=dict)
    cases_opened: int = 0
    case_notify_failed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe summary.

        `alerts_created` and `by_rule` count every new alert row, suppressed ones
        included; `suppressed` (and `suppressed_by_rule`) say how many of them an
        active suppression matched. `cases_opened`: cases opened by this run's alerts;
        `case_notify_failed`: of the cases this run announced (on_fraud_case_opened), how
        many a listener failed for.
        """
        return {
            "since": self.window.since.isoformat(),
            "until": self.window.until.isoformat(),
            "from_watermark": self.window.from_watermark,
            "scanned": self.scanned,
            "findings": self.findings,
            "alerts_created": sum(self.by_rule.values()),
            "by_rule": dict(self.by_rule),
            "emitted": self.notified,
            "notify_failed": self.notify_failed,
            "suppressed": sum(self.suppressed_by_rule.values()),
            "suppressed_by_rule": dict(self.suppressed_by_rule),
            "cases_opened": self.cases_opened,
            "case_notify_failed": self.case_notify_failed,
        }


@dataclass
class _Found:
    """What the read phase found: the window, its size, and per rule the rows to insert."""

    window: Window
    scanned: int
    findings: int
    rows: dict[str, list[dict[str, Any]]]
    owners: dict[int, int] = field(default_factory=dict)
    suppressions: list[FraudSuppression] = field(default_factory=list)
    counterparties: dict[int, str] = field(default_factory=dict)


def _find(
    session: Session,
    settings: FraudSettings,
    rules: list[ActiveRule],
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> _Found:
    """The read phase: resolve the window and run every rule; nothing is written.

    Each rule's context carries the settings of the plugin that registered it, and
    the transactions to read (`current().data`, in their own session when mapped).
    """
    runtime = current()
    window = resolve_window(session, settings, since, until, now)
    with runtime.data_session(session) as data:
        found = _Found(window, _scanned(data, window, runtime.data), 0, {})
        for active in rules:
            _run_rule(found, active, data, settings, now, runtime.data)
    return found


def _run_rule(
    found: _Found,
    active: ActiveRule,
    session: Session,
    settings: FraudSettings,
    now: datetime,
    tables: DataTables,
) -> None:
    """Run one rule over the found window; its rows go into `found`."""
    window, rule = found.window, active.rule
    ctx = RuleContext(
        session,
        window.since,
        window.until,
        active.settings,
        now,
        fraud_settings=settings,
        tables=tables,
    )
    try:
        findings = list(rule.find(ctx))
        found.rows[rule.name] = alert_rows(rule, findings, now, active.settings_hash)
    except Exception as exc:
        exc.add_note(f"in fraud rule {rule.name!r}")
        raise
    found.findings += len(findings)


def _casework(session: Session, found: _Found, now: datetime) -> None:
    """End of the read phase: what the write phase needs besides the rows, read now so that
    the write transaction starts with its first INSERT (on SQLite a read transaction
    turned writer can fail with SQLITE_BUSY_SNAPSHOT): the active suppressions of the
    rules that found something, the counterparties of the alerts' transactions (only
    when a counterparty suppression is active), and the owner (user) of every account
    with a finding. A suppression created or lifted while the analysis runs applies
    from the next run."""
    rules = [name for name, rows in found.rows.items() if rows]
    rows = [row for name in rules for row in found.rows[name]]
    if not rows:
        return
    found.suppressions = active_suppressions(session, rules, now)
    if any(s.counterparty is not None for s in found.suppressions):
        found.counterparties = counterparties(
            session, {r["transaction_id"] for r in rows if r["transaction_id"] is not None}
        )
    found.owners = account_owners(session, {r["account_id"] for r in rows})


@dataclass
class _Stored:
    """What the write phase did."""

    by_rule: dict[str, int]
    created: list[FraudAlert]
    suppressed_by_rule: dict[str, int]
    opened: list[FraudCase]
    announce: list[tuple[FraudCase, FraudAlert]]


def _store(session: Session, found: _Found, now: datetime, min_severity: str) -> _Stored:
    """The write phase: insert every rule's rows (those an active suppression matches as
    `suppressed`), attach the new unsuppressed alerts to their customers' open cases
    (opening the missing ones), move the watermark."""
    by_rule: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    created: list[FraudAlert] = []
    for name, rows in found.rows.items():
        apply_suppressions(rows, found.suppressions, found.counterparties)
        new = insert_alerts(session, rows)
        by_rule[name] = len(new)
        hushed = sum(1 for a in new if a.status == AlertStatus.suppressed.value)
        if hushed:
            suppressed[name] = hushed
        created.extend(new)
    cases = open_cases(session, created, found.owners, now, min_severity)
    if found.window.from_watermark:
        _advance_watermark(session, found.window.until)
    return _Stored(by_rule, created, suppressed, cases.opened, cases.announce)


def analyse(since: datetime | None = None, until: datetime | None = None) -> Outcome:
    """Run the active rules over a window (see `analyze_fraud_patterns`).

    Two transactions: every rule reads in the first, which ends before the second
    inserts all new alerts and moves the watermark. So the write transaction is
    short, and on SQLite (one writer at a time) analyses of other windows run
    their reads in parallel instead of waiting for the write lock. (A read
    transaction that turned into a write one could also fail on SQLite with
    SQLITE_BUSY_SNAPSHOT when another analysis committed in between.)
    """
    runtime = current()
    settings: FraudSettings = runtime.settings_for("fraud")
    rules = active_rules(runtime, settings)
    now = utcnow()
    with runtime.db.session() as session:
        found = _find(session, settings, rules, since, until, now)
        _casework(session, found, now)
    with runtime.db.session() as session:
        stored = _store(session, found, now, settings.alert_min_severity)
    # Committed: listeners only ever hear about alerts and cases that exist.
    outcome = Outcome(found.window, found.scanned, stored.by_rule, found.findings)
    outcome.suppressed_by_rule = stored.suppressed_by_rule
    live = [a for a in stored.created if a.status != AlertStatus.suppressed.value]
    outcome.notified, outcome.notify_failed = _emit(live, settings.alert_min_severity)
    outcome.cases_opened = len(stored.opened)
    outcome.case_notify_failed = _emit_cases(stored.announce)
    log.info(
        "fraud_analysis_done",
        since=found.window.since.isoformat(),
        until=found.window.until.isoformat(),
        scanned=outcome.scanned,
        alerts_created=len(stored.created),
        suppressed=sum(outcome.suppressed_by_rule.values()),
        cases_opened=outcome.cases_opened,
    )
    return outcome
