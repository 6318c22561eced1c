"""Tables of the fraud plugin: `fraud_alerts` and `fraud_watermark`."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, UniqueConstraint
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
    """Where an alert is in its life: open → investigating → resolved | false_positive."""

    open = "open"
    investigating = "investigating"
    resolved = "resolved"
    false_positive = "false_positive"


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
        }

    def __repr__(self) -> str:
        return f"<FraudAlert #{self.id} {self.rule} account={self.account_id} {self.status}>"


class FraudWatermark(Base):
    """Up to when the scheduled analysis has looked (one row per named stream)."""

    __tablename__ = "fraud_watermark"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    analysed_until: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
