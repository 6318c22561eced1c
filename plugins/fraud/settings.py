"""FraudSettings: thresholds, windows and rule selection (`FRAUD_*` variables)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core import CommaList, PluginSettings

Severity = Literal["low", "medium", "high", "critical"]
MAX_AMOUNT = Decimal(2**63 - 1) / 100
"""The largest amount the database stores (64-bit cents): a higher threshold is absurd."""
YEAR_MINUTES, YEAR_HOURS, CENTURY_DAYS = 366 * 24 * 60, 366 * 24, 36_600
"""Upper bounds of windows and ages: beyond them, date arithmetic would overflow."""


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
    rules: CommaList = Field(None, description="allow-list of rule names (unset: all)")
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

    @model_validator(mode="after")
    def _overlap_covers_windows(self) -> FraudSettings:
        longest_minutes = max(self.velocity_window_minutes, self.structuring_window_hours * 60)
        if self.overlap_hours * 60 < longest_minutes:
            raise ValueError(
                f"FRAUD_OVERLAP_HOURS={self.overlap_hours} must cover the longest rule window "
                f"({longest_minutes} minutes), or patterns spanning two runs are missed"
            )
        return self
