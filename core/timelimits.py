"""Time limits of a task: a soft one that stops it cleanly, a hard one that kills it.

Every task has both. A plugin sets a task's own with `@task(soft_time_limit=...,
time_limit=...)`; a task that sets none gets BANKTASKS_SOFT_TIME_LIMIT and
BANKTASKS_TIME_LIMIT; BANKTASKS_TIME_LIMITS overrides single tasks
(`acme.nightly_import=600/660`). At the soft limit Celery raises
SoftTimeLimitExceeded inside the task: banktasks ends it with TaskTimeLimitExceeded
(recorded as the task's failure, never retried). At the hard limit the pool process
is killed and replaced. Limits work in the prefork pool (the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import BanktasksError

EXAMPLE = "acme.nightly_import=600/660"


class TaskTimeLimitExceeded(BanktasksError):
    """A task reached its soft time limit and was stopped (not retried)."""


@dataclass(frozen=True)
class TimeLimits:
    """A task's soft and hard time limits, in seconds (0 < soft < hard)."""

    soft: int
    hard: int

    def __post_init__(self) -> None:
        if not 0 < self.soft < self.hard:
            raise ValueError(
                f"soft {self.soft} s / hard {self.hard} s: expected 0 < soft < hard "
                "(the soft limit stops the task cleanly before the hard one kills it)"
            )


def _seconds(text: Any, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{what}: {text!r:.40} is not a whole number of seconds") from None
    return value


def parse_overrides(value: Any) -> dict[str, TimeLimits]:
    """BANKTASKS_TIME_LIMITS: `task=soft/hard,...` (or a mapping of task → "soft/hard")."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        pairs = []
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            name, sep, limits = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r:.60}: expected task=soft/hard, e.g. {EXAMPLE}")
            pairs.append((name.strip(), limits))
    elif isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        raise ValueError(f"expected task=soft/hard,... e.g. {EXAMPLE}")
    overrides: dict[str, TimeLimits] = {}
    for name, limits in pairs:
        if isinstance(limits, TimeLimits):
            overrides[name] = limits
            continue
        parts = limits if isinstance(limits, list | tuple) else str(limits).split("/")
        if len(parts) != 2:
            raise ValueError(f"{name}={limits!r:.40}: expected soft/hard seconds, e.g. {EXAMPLE}")
        try:
            overrides[name] = TimeLimits(
                _seconds(parts[0], f"{name} soft"), _seconds(parts[1], f"{name} hard")
            )
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return overrides


def task_limits(
    name: str, options: Mapping[str, Any], default: TimeLimits, overrides: Mapping[str, TimeLimits]
) -> TimeLimits:
    """The limits a task runs with: the override, else its plugin's, else the default.

    Raises ValueError when the plugin gave only one of the two or soft >= hard.
    """
    if name in overrides:
        return overrides[name]
    soft, hard = options.get("soft_time_limit"), options.get("time_limit")
    if soft is None and hard is None:
        return default
    if soft is None or hard is None:
        given = "soft_time_limit" if soft is not None else "time_limit"
        raise ValueError(
            f"@task {name}: {given} given alone; give soft_time_limit and time_limit "
            "together (soft < hard)"
        )
    try:
        return TimeLimits(int(soft), int(hard))
    except ValueError as exc:
        raise ValueError(f"@task {name}: {exc}") from None
