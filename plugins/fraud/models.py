"""Tables of the fraud plugin: `fraud_alerts`, `fraud_watermark`, and the case work on them:
`fraud_cases`, `fraud_suppressions` and the append-only `fraud_audit`."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import DDL, JSON, Float, Index, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow

SEVERITIES = ("low", "medium", "high", "critical")
"""Severities from lowest to highest."""


def severity_rank(severity: str) -> int:
    """Position of a severity in SEVERITIES (raises ValueError naming the valid ones)."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(
            f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}"
        ) from None


class AlertStatus(enum.StrEnum):
    """Where an alert is in its life: open → investigating → resolved | false_positive.

    `suppressed`: raised while an active `FraudSuppression` matched it; stored (and
    counted) but final from the start: no case, no risk score, no hook.
    """

    open = "open"
    investigating = "investigating"
    resolved = "resolved"
    false_positive = "false_positive"
    suppressed = "suppressed"


class CaseStatus(enum.StrEnum):
    """Where a case is in its life: open → investigating → closed (final)."""

    open = "open"
    investigating = "investigating"
    closed = "closed"


class CaseResolution(enum.StrEnum):
    """Why a case was closed (`close_case`)."""

    confirmed_fraud = "confirmed_fraud"
    false_positive = "false_positive"
    no_action = "no_action"


class FraudAlert(Base):
    """One suspicious pattern found by one rule; unique per (rule, dedup_key).

    `rule_version` is the rule's `version` and `settings_hash` the
    `plugins.fraud.api.settings_hash` of the settings it ran with, both when the alert
    was raised (NULL on alerts stored before rules had versions, migration fraud_0002).
    """

    __tablename__ = "fraud_alerts"
    __table_args__ = (
        UniqueConstraint("rule", "dedup_key", name="uq_fraud_alerts_rule_dedup_key"),
        Index("ix_fraud_alerts_status_created", "status", "created_at"),
        Index("ix_fraud_alerts_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    # No foreign keys: alerts outlive pruned transactions; ids are the evidence.
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    transaction_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.open.value)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedup_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rule_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    settings_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The customer's case it is part of, and the suppression that silenced it (fraud_0003).
    case_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    suppression_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view of the alert (what `banktasks alerts list --json` prints)."""
        return {
            "id": self.id,
            "rule": self.rule,
            "rule_version": self.rule_version,
            "settings_hash": self.settings_hash,
            "account_id": self.account_id,
            "transaction_id": self.transaction_id,
            "severity": self.severity,
            "score": self.score,
            "status": self.status,
            "evidence": self.evidence,
            "dedup_key": self.dedup_key,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "case_id": self.case_id,
            "suppression_id": self.suppression_id,
        }

    def __repr__(self) -> str:
        return f"<FraudAlert #{self.id} {self.rule} account={self.account_id} {self.status}>"


class FraudWatermark(Base):
    """Up to when the scheduled analysis has looked (one row per named stream)."""

    __tablename__ = "fraud_watermark"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    analysed_until: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class FraudCase(Base):
    """One customer's case: the alerts raised on any of their accounts while it is open.

    `open_user_id` is `user_id` while the case is open or investigating and NULL once
    closed; its UNIQUE constraint (NULLs are distinct on SQLite and PostgreSQL) lets the
    database keep at most one open case per customer, whoever races to open it.
    """

    __tablename__ = "fraud_cases"
    __table_args__ = (
        UniqueConstraint("open_user_id", name="uq_fraud_cases_open_user_id"),
        Index("ix_fraud_cases_status_opened", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    open_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.open.value)
    assignee: Mapped[str | None] = mapped_column(String(100), nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When on_fraud_case_opened was called for it: with its first alert at or above
    # FRAUD_ALERT_MIN_SEVERITY (NULL while it holds only lower ones).
    announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view of the case."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "status": self.status,
            "assignee": self.assignee,
            "resolution": self.resolution,
            "note": self.note,
            "opened_at": _iso(self.opened_at),
            "updated_at": _iso(self.updated_at),
            "closed_at": _iso(self.closed_at),
            "announced_at": _iso(self.announced_at),
        }

    def __repr__(self) -> str:
        return f"<FraudCase #{self.id} user={self.user_id} {self.status}>"


class FraudSuppression(Base):
    """Silences one rule for one account or one counterparty until a moment.

    Exactly one of `account_id` / `counterparty` is set. Active while not lifted and
    `until` is in the future; alerts it matches are stored with status `suppressed`.
    """

    __tablename__ = "fraud_suppressions"
    __table_args__ = (Index("ix_fraud_suppressions_rule_until", "rule", "until"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    counterparty: Mapped[str | None] = mapped_column(String(200), nullable=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(100), nullable=True)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view of the suppression."""
        return {
            "id": self.id,
            "rule": self.rule,
            "account_id": self.account_id,
            "counterparty": self.counterparty,
            "until": _iso(self.until),
            "reason": self.reason,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "lifted_at": _iso(self.lifted_at),
            "lifted_by": self.lifted_by,
        }


class FraudAudit(Base):
    """One change to a case or a suppression: who, when, what (append-only).

    The database refuses UPDATE and DELETE on this table (triggers, see `AUDIT_TRIGGERS`).
    """

    __tablename__ = "fraud_audit"
    __table_args__ = (Index("ix_fraud_audit_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view of the audit row."""
        return {
            "id": self.id,
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "details": self.details,
        }


AUDIT_REFUSAL = "fraud_audit is append-only"
"""The error message of the triggers that refuse UPDATE and DELETE on fraud_audit."""


def audit_trigger_ddl(dialect: str, schema: str | None) -> list[str]:
    """The statements that make `fraud_audit` append-only on `dialect` (`sqlite` or
    `postgresql`); `schema` qualifies the table and PostgreSQL's trigger function
    (DATABASE_SCHEMA; None: the connection's default)."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS fraud_audit_no_{verb.lower()} BEFORE {verb} "
            f"ON fraud_audit BEGIN SELECT RAISE(ABORT, '{AUDIT_REFUSAL}'); END"
            for verb in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        prefix = f'"{schema}".' if schema else ""
        function = f"{prefix}fraud_audit_append_only"
        return [
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{AUDIT_REFUSAL}'; END $$",
            f"DROP TRIGGER IF EXISTS fraud_audit_append_only ON {prefix}fraud_audit",
            f"CREATE TRIGGER fraud_audit_append_only BEFORE UPDATE OR DELETE ON "
            f"{prefix}fraud_audit FOR EACH ROW EXECUTE FUNCTION {function}()",
        ]
    return []


@event.listens_for(FraudAudit.__table__, "after_create")
def _append_only(target: Any, connection: Any, **kw: Any) -> None:
    """Create the append-only triggers whenever the table is created from the models."""
    translate = connection.get_execution_options().get("schema_translate_map") or {}
    schema = target.schema or translate.get(None)
    for statement in audit_trigger_ddl(connection.dialect.name, schema):
        connection.execute(DDL(statement.replace("%", "%%")))
