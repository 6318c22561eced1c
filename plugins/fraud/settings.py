"""FraudSettings: thresholds, windows and rule selection (`FRAUD_*` variables)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from core import CommaList, PluginSettings
from core.models import TransactionChannel

Severity = Literal["low", "medium", "high", "critical"]
MAX_AMOUNT = Decimal(2**63 - 1) / 100
"""The largest amount the database stores (64-bit cents): a higher threshold is absurd."""
YEAR_MINUTES, YEAR_HOURS, CENTURY_DAYS = 366 * 24 * 60, 366 * 24, 36_600
"""Upper bounds of windows and ages: beyond them, date arithmetic would overflow."""
DEFAULT_RISK_WEIGHTS = {"low": 1.0, "medium": 3.0, "high": 7.0, "critical": 15.0}
"""What each open alert of a severity adds to a risk score, unless FRAUD_RISK_WEIGHTS says."""


def parse_risk_weights(value: Any) -> Any:
    """FRAUD_RISK_WEIGHTS as `high=10,critical=20` or a JSON object (a TOML table: a dict);
    severities not named keep their default weight."""
    if value is None or value == "":
        return dict(DEFAULT_RISK_WEIGHTS)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = json.loads(text)
        else:
            pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError(
                    f"{value!r}: expected severity=weight pairs, e.g. high=10,critical=20"
                )
            value = {name.strip().lower(): weight.strip() for name, weight in pairs}
    if not isinstance(value, dict):
        raise ValueError("expected severity=weight pairs, e.g. high=10,critical=20")
    return {**DEFAULT_RISK_WEIGHTS, **{str(k).strip().lower(): v for k, v in value.items()}}


RiskWeights = Annotated[dict[str, float], NoDecode, BeforeValidator(parse_risk_weights)]


class FraudSettings(PluginSettings):
    """Settings of the fraud plugin; each field is read from `FRAUD_<FIELD>`."""

    large_amount: Decimal = Field(
        Decimal("10000"),
        gt=0,
        lt=MAX_AMOUNT,
        description="large_transaction fires strictly above this amount",
    )
    velocity_limit: int = Field(
        10, ge=1, le=1_000_000, description="velocity fires above this many transactions"
    )
    velocity_window_minutes: int = Field(
        60, gt=0, le=YEAR_MINUTES, description="rolling window of velocity"
    )
    structuring_band_low: Decimal = Field(
        Decimal("0.90"),
        gt=0,
        lt=1,
        description="structuring band starts at band_low * large_amount",
    )
    structuring_window_hours: int = Field(
        24, gt=0, le=YEAR_HOURS, description="rolling window of structuring"
    )
    structuring_min_count: int = Field(
        2, ge=2, le=1_000_000, description="deposits needed in the window"
    )
    rules: CommaList = Field(
        None,
        description="allow-list of rule names (unset: every rule that is on by default, and "
        "those FRAUD_ENABLE_RULES names)",
    )
    enable_rules: CommaList = Field(
        None,
        description="rules that are off by default to run too (the typologies: "
        "cash_threshold, amount_deviation, fan_in_out, pass_through, dormant_reactivation)",
    )
    disable_rules: CommaList = Field(None, description="deny-list of rule names")
    unresolved_max_age_days: int = Field(
        7, gt=0, le=CENTURY_DAYS, description="health check threshold"
    )
    alert_min_severity: Severity = Field("high", description="on_fraud_alert from this severity")
    initial_lookback_days: int = Field(
        30, gt=0, le=CENTURY_DAYS, description="first run looks back this far"
    )
    overlap_hours: int = Field(
        24, gt=0, le=10 * YEAR_HOURS, description="re-read before the watermark"
    )
    ctr_amount: Decimal = Field(
        Decimal("10000"),
        gt=0,
        lt=MAX_AMOUNT,
        description="cash_threshold fires when a customer's cash in a business day is above this",
    )
    business_timezone: str = Field(
        "UTC",
        description="IANA time zone of cash_threshold's business day, e.g. America/New_York",
    )
    deviation_factor: Decimal = Field(
        Decimal("5"),
        gt=1,
        le=1000,
        description="amount_deviation fires above this times the account's p95 amount",
    )
    deviation_history_days: int = Field(
        90, gt=0, le=CENTURY_DAYS, description="amount_deviation's trailing history"
    )
    deviation_min_history: int = Field(
        10, ge=1, le=1_000_000, description="history transactions amount_deviation needs"
    )
    deviation_min_amount: Decimal = Field(
        Decimal("5000"),
        ge=0,
        lt=MAX_AMOUNT,
        description="amount_deviation looks only at transactions above this amount",
    )
    fan_min_counterparties: int = Field(
        6, ge=2, le=1_000_000, description="fan_in_out fires from this many counterparties"
    )
    fan_window_hours: int = Field(
        24, gt=0, le=YEAR_HOURS, description="rolling window of fan_in_out"
    )
    fan_ignore_channels: CommaList = Field(
        ["card"],
        description="channels fan_in_out leaves out (comma list; card: merchants; empty: none)",
    )
    pass_through_percent: int = Field(
        80, ge=1, le=1000, description="pass_through fires from this % of a deposit paid out"
    )
    pass_through_hours: int = Field(
        48, gt=0, le=YEAR_HOURS, description="pass_through's window after the deposit"
    )
    pass_through_min_amount: Decimal = Field(
        Decimal("5000"),
        ge=0,
        lt=MAX_AMOUNT,
        description="pass_through looks only at deposits above this amount",
    )
    dormant_days: int = Field(
        180, gt=1, le=CENTURY_DAYS, description="dormant_reactivation's quiet days"
    )
    dormant_amount: Decimal = Field(
        Decimal("5000"),
        gt=0,
        lt=MAX_AMOUNT,
        description="dormant_reactivation fires from this total after the quiet spell",
    )
    dormant_activity_days: int = Field(
        3, gt=0, le=CENTURY_DAYS, description="dormant_reactivation's window after it"
    )
    suppression_max_days: int = Field(
        365,
        gt=0,
        le=CENTURY_DAYS,
        description="a suppression's --until is at most this many days ahead (to the end of "
        "that day, UTC)",
    )

    risk_weights: RiskWeights = Field(
        default_factory=lambda: dict(DEFAULT_RISK_WEIGHTS),
        description="what each open or investigating alert adds to its account's and case's "
        "risk score, by severity (e.g. high=10,critical=20; unnamed severities keep "
        "low=1, medium=3, high=7, critical=15)",
    )

    @field_validator("risk_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        known = ("low", "medium", "high", "critical")
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"unknown severity(ies) {', '.join(unknown)}; severities: {', '.join(known)}"
            )
        negative = sorted(name for name, weight in value.items() if not 0 <= weight < 1e12)
        if negative:
            raise ValueError(
                f"weight of {', '.join(negative)} must be zero or more (and below 1e12)"
            )
        return {name: float(value[name]) for name in known}

    @field_validator("alert_min_severity", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("large_amount")
    @classmethod
    def _cents(cls, value: Decimal) -> Decimal:
        if value != value.quantize(Decimal("0.01")):
            raise ValueError("expected an amount with at most two decimal places, e.g. 10000.00")
        return value

    @field_validator(
        "ctr_amount",
        "deviation_factor",
        "deviation_min_amount",
        "pass_through_min_amount",
        "dormant_amount",
    )
    @classmethod
    def _typology_cents(cls, value: Decimal) -> Decimal:
        if value != value.quantize(Decimal("0.01")):
            raise ValueError("expected a value with at most two decimal places, e.g. 10000.00")
        return value

    @field_validator("business_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        value = value.strip()
        if value == "UTC":
            return value
        try:
            ZoneInfo(value)
        except (ValueError, OSError, ZoneInfoNotFoundError):
            raise ValueError(
                f"unknown time zone {value!r}: expected an IANA name such as "
                "America/New_York (or UTC)"
            ) from None
        return value

    @field_validator("fan_ignore_channels")
    @classmethod
    def _channels(cls, value: list[str] | None) -> list[str]:
        known = [channel.value for channel in TransactionChannel]
        unknown = sorted({v.lower() for v in value or ()} - set(known))
        if unknown:
            raise ValueError(
                f"unknown channel(s) {', '.join(unknown)}; channels: {', '.join(known)}"
            )
        return sorted({v.lower() for v in value or ()})

    @model_validator(mode="after")
    def _dormant_gap_longer_than_activity(self) -> FraudSettings:
        if self.dormant_activity_days >= self.dormant_days:
            raise ValueError(
                f"FRAUD_DORMANT_ACTIVITY_DAYS={self.dormant_activity_days} must be less than "
                f"FRAUD_DORMANT_DAYS={self.dormant_days}"
            )
        return self

    @model_validator(mode="after")
    def _overlap_covers_windows(self) -> FraudSettings:
        longest_minutes = max(
            self.velocity_window_minutes,
            self.structuring_window_hours * 60,
            self.fan_window_hours * 60,  # a burst rule; the other typologies need no overlap
        )
        if self.overlap_hours * 60 < longest_minutes:
            hours = -(-longest_minutes // 60)
            raise ValueError(
                f"FRAUD_OVERLAP_HOURS={self.overlap_hours} must cover the longest rule window "
                f"({longest_minutes} minutes), or patterns spanning two runs are missed: "
                f"set FRAUD_OVERLAP_HOURS={hours} or more"
            )
        return self
