"""Schedule entries for Celery beat, and how operators override them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery.schedules import crontab

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.taskdef import TaskDef

OFF_VALUES = {"off", "none", "disabled", "false", "0"}


def parse_cron(expr: str, where: str) -> crontab:
    """Parse a five-field cron expression (`minute hour day month weekday`) in UTC."""
    fields = expr.split()
    if len(fields) != 5:
        raise ConfigError(
            f"{where}={expr!r}: expected a cron expression with 5 fields "
            "'minute hour day-of-month month day-of-week' (e.g. '0 2 * * *') or 'off'"
        )
    minute, hour, dom, month, dow = fields
    try:
        cron = crontab(
            minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}={expr!r}: not a valid cron expression ({exc})") from None
    return cron


@dataclass(frozen=True)
class Schedule:
    """One periodic run of a task: `Schedule("nightly-run", task, cron="0 1 * * *")`.

    Give either `cron` (five fields, UTC) or `every` (seconds or a timedelta).
    """

    name: str
    task: TaskDef
    cron: str | None = None
    every: float | timedelta | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"Schedule {self.name!r}: give exactly one of cron= or every=")

    def celery_schedule(self, where: str) -> crontab | timedelta:
        """The Celery schedule object (crontab or timedelta)."""
        if self.cron is not None:
            return parse_cron(self.cron, where)
        every = self.every
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every or 0)
        if seconds <= 0:
            raise ConfigError(f"{where}: every= must be a positive number of seconds")
        return timedelta(seconds=seconds)

    def with_override(self, override: str | None, setting_name: str) -> Schedule | None:
        """Apply an operator override: None keeps it, `off` removes it, a cron replaces it."""
        if override is None or override.strip() == "":
            return self
        if override.strip().lower() in OFF_VALUES:
            return None
        parse_cron(override.strip(), setting_name)
        return Schedule(
            self.name, self.task, cron=override.strip(), kwargs=self.kwargs, options=self.options
        )
