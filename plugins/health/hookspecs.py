"""Hooks the health plugin owns. Implement them with `core.hookimpl` in any plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import hookspec

if TYPE_CHECKING:
    from plugins.health.api import HealthCheck


@hookspec
def register_health_checks() -> list[HealthCheck]:
    """Return health checks: objects with `name: str` and `run(ctx) -> CheckResult`.

    `ctx` is a `plugins.health.CheckContext` (app, db, now, timeout). A check runs in
    its own thread, bounded by `ctx.timeout` seconds; if it raises or hangs it is
    reported `down` and the other checks are still reported. Names must be unique.
    The built-in `database`, `broker` and `pending_transactions` come through this hook.
    """
    return []
