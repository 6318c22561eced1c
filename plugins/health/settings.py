"""Settings of the health plugin: `HEALTH_PENDING_MAX_AGE_HOURS`, `HEALTH_CHECK_TIMEOUT_SECONDS`."""

from __future__ import annotations

from pydantic import Field

from core import PluginSettings


class HealthSettings(PluginSettings):
    """Thresholds of the built-in checks and the per-check timeout."""

    pending_max_age_hours: int = Field(
        24,
        gt=0,
        le=100 * 366 * 24,  # a century: beyond it the cut-off date would overflow
        description="Pending transactions older than this many hours → degraded",
    )
    check_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="A check that takes longer is reported down"
    )
