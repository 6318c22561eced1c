"""The shapes a health check is written against: `HealthCheck`, `CheckContext`, `CheckResult`.

A check from another plugin need not import any of them: it may return a plain
mapping `{"status": ..., "detail": ..., "value": ..., "threshold": ...}` (see
`RESULT_FIELDS`), which the runner reads exactly like a `CheckResult`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["ok", "degraded", "down"]
STATUSES: tuple[str, ...] = ("ok", "degraded", "down")  # in order of severity
RESULT_FIELDS: tuple[str, ...] = ("status", "detail", "value", "threshold")


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
    """What a check may use.

    - `app`: the Celery app (`app.runtime` has the core settings, plugins and database);
    - `db`: the database (`core.db.Database`: `ctx.db.session()`, `ctx.db.engine`);
    - `now`: the moment of this run (aware UTC; use it rather than the clock);
    - `timeout`: the check's deadline in seconds (HEALTH_CHECK_TIMEOUT_SECONDS);
    - `settings`: the settings model of the plugin that REGISTERED the check (its
      `register_settings()` model, or a plain `core.PluginSettings` if it has none).
      The runner always sets it; it is None only in a context built by hand.
    """

    app: Any
    db: Any
    now: datetime
    timeout: float
    settings: Any = None


CheckOutcome = CheckResult | Mapping[str, Any]
"""What `HealthCheck.run()` returns: a `CheckResult`, a mapping with the keys of
`RESULT_FIELDS` (only `status` is required), or any object with those attributes."""


@runtime_checkable
class HealthCheck(Protocol):
    """A health check, as returned by `register_health_checks()`."""

    name: str

    def run(self, ctx: CheckContext) -> CheckOutcome:
        """Look at one part of the system and say how it is; may raise (→ down)."""
        ...


def worst(statuses: list[str]) -> str:
    """The most severe status of a list: ok < degraded < down (ok when empty)."""
    return max(statuses, key=STATUSES.index, default="ok")
