"""The shapes a health check is written against: `HealthCheck`, `CheckContext`, `CheckResult`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["ok", "degraded", "down"]
STATUSES: tuple[str, ...] = ("ok", "degraded", "down")  # in order of severity


@dataclass(frozen=True)
class CheckResult:
    """What a check found: `status` ("ok", "degraded" or "down"), a one-line `detail`,
    and optionally the measured `value` and the `threshold` it was compared with."""

    status: Status
    detail: str = ""
    value: Any = None
    threshold: Any = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"CheckResult.status={self.status!r}: expected one of {', '.join(STATUSES)}"
            )


@dataclass(frozen=True)
class CheckContext:
    """What a check may use: the Celery `app` (`app.runtime` has settings and plugins),
    the `db` (core.db.Database), `now` (aware UTC) and its `timeout` in seconds."""

    app: Any
    db: Any
    now: datetime
    timeout: float


@runtime_checkable
class HealthCheck(Protocol):
    """A health check, as returned by `register_health_checks()`."""

    name: str

    def run(self, ctx: CheckContext) -> CheckResult:
        """Look at one part of the system and say how it is; may raise (→ down)."""
        ...


def worst(statuses: list[str]) -> str:
    """The most severe status of a list: ok < degraded < down (ok when empty)."""
    return max(statuses, key=STATUSES.index, default="ok")
