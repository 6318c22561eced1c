"""Hooks the health plugin owns. Implement them with `core.hookimpl` in any plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import hookspec

if TYPE_CHECKING:
    from plugins.health.api import HealthCheck


@hookspec
def register_health_checks() -> list[HealthCheck]:
    """Return health checks: objects with a unique `name: str` and `run(ctx)`.

    `ctx` has `app`, `db` (`core.db.Database`), `now` (aware UTC), `timeout` (seconds)
    and `settings`: the settings model of the plugin that registered the check (its own,
    from `register_settings()`). `run(ctx)` returns a plain dict `{"status": "ok" |
    "degraded" | "down", "detail": str, "value": ..., "threshold": ...}` (only `status`
    is required), or a `plugins.health.CheckResult` for plugins that depend on health.
    Each check runs in its own thread, bounded by `ctx.timeout`; one that raises, hangs
    or returns something else is reported `down`, and the other checks are still
    reported. The built-in `database`, `broker`, `queue_backlog` and
    `pending_transactions` checks come through this hook too.
    """
    return []
