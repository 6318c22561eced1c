"""Settings of the health plugin: `HEALTH_PENDING_MAX_AGE_HOURS`,
`HEALTH_CHECK_TIMEOUT_SECONDS`, `HEALTH_RESULT_CACHE_SECONDS`, `HEALTH_QUEUE_MAX_LENGTH`,
`HEALTH_QUEUE_MAX_AGE_SECONDS` (and `HEALTH_SCHEDULE`, from `core.PluginSettings`)."""

from __future__ import annotations

from pydantic import Field

from core import PluginSettings

PLUGIN = "health"  # the name the settings are registered under (prefix HEALTH_)


class HealthSettings(PluginSettings):
    """Thresholds of the built-in checks and the per-check timeout."""

    pending_max_age_hours: int = Field(
        24,
        gt=0,
        le=100 * 366 * 24,  # a century: beyond it the cut-off date would overflow
        description=(
            "Pending transactions created more than this many hours ago make the "
            "`pending_transactions` check degraded (1 to 876,000: a century)"
        ),
    )
    check_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description=(
            "Deadline of each check in seconds (0 < t ≤ 300): a check still running then "
            "is reported down"
        ),
    )
    result_cache_seconds: int = Field(
        0,
        ge=0,
        le=3600,
        description=(
            "A call of `health.system_health_check` within this many seconds of the last "
            "run returns that run's report (0 to 3600; default 0: every call runs the "
            "checks; e.g. 15 when dashboards call the task every few seconds)"
        ),
    )
    queue_max_length: int = Field(
        1000,
        ge=1,
        description=(
            "A queue holding more messages than this makes the `queue_backlog` check "
            "degraded (messages waiting on the broker, not yet taken by a worker)"
        ),
    )
    queue_max_age_seconds: int = Field(
        600,
        ge=1,
        le=366 * 86400,
        description=(
            "A queue whose oldest message has waited longer than this many seconds makes "
            "the `queue_backlog` check degraded (1 to 31,622,400: a year)"
        ),
    )
