"""Run every registered check, each in its own thread with a deadline, and aggregate.

A check that raises is `down` with its error; one that is still running at the
deadline is `down` ("timed out") and left behind in a daemon thread, so a hung
dependency never hangs the task or the `banktasks health` probe.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime
from typing import Any

from core.db import utcnow
from core.logging import redact_text
from plugins.health.api import STATUSES, CheckContext, CheckResult, worst


class _CheckThread(threading.Thread):
    def __init__(self, check: Any, ctx: CheckContext) -> None:
        super().__init__(name=f"health-{getattr(check, 'name', '?')}", daemon=True)
        self.check = check
        self.ctx = ctx
        self.result: Any = None
        self.error: BaseException | None = None
        self.elapsed: float | None = None

    def run(self) -> None:
        # Celery's "current app" is per thread: make `core.current()` work inside checks.
        self.ctx.app.set_current()
        started = time.perf_counter()
        try:
            self.result = self.check.run(self.ctx)
        except BaseException as exc:
            self.error = exc
        finally:
            self.elapsed = time.perf_counter() - started


def collect_checks(app: Any) -> tuple[list[tuple[str, Any]], dict[str, dict[str, Any]]]:
    """Checks from `register_health_checks()`, as `(name, check)`, plus reports for
    plugins whose registration failed and for duplicate or nameless checks."""
    hook = app.runtime.hook.register_health_checks
    health_plugin = sys.modules.get("plugins.health")
    checks: list[tuple[str, Any]] = []
    broken: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    # Registration order, the health plugin's own built-ins first: the first name wins.
    impls = sorted(hook.get_hookimpls(), key=lambda impl: impl.plugin is not health_plugin)
    for impl in impls:
        plugin = impl.plugin_name
        try:
            registered = list(impl.function() or [])
        except Exception as exc:
            broken[f"{plugin}:register_health_checks"] = _report(
                CheckResult("down", f"register_health_checks() failed: {_error(exc)}"), 0.0
            )
            continue
        for check in registered:
            name = getattr(check, "name", None)
            if not isinstance(name, str) or not name or not callable(getattr(check, "run", None)):
                broken[f"{plugin}:{name or type(check).__name__}"] = _report(
                    CheckResult("down", f"{check!r} is not a HealthCheck (name + run(ctx))"), 0.0
                )
            elif name in seen:
                broken[f"{name}@{plugin}"] = _report(
                    CheckResult(
                        "down",
                        f"check name {name!r} is already registered by plugin {seen[name]!r}; "
                        "rename one of them",
                    ),
                    0.0,
                )
            else:
                seen[name] = plugin
                checks.append((name, check))
    return checks, broken


def _error(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")


def _report(result: CheckResult, seconds: float) -> dict[str, Any]:
    return {
        "status": result.status,
        "detail": result.detail,
        "value": result.value,
        "threshold": result.threshold,
        "duration_ms": round(seconds * 1000, 1),
    }


def _outcome(thread: _CheckThread, timeout: float) -> dict[str, Any]:
    if thread.is_alive() or thread.elapsed is None:
        return _report(
            CheckResult("down", f"timed out after {timeout:g} s", threshold=timeout), timeout
        )
    if thread.error is not None:
        return _report(CheckResult("down", _error(thread.error)), thread.elapsed)
    result = thread.result
    if not isinstance(result, CheckResult):
        status = getattr(result, "status", None)
        if status not in STATUSES:
            return _report(
                CheckResult("down", f"run() returned {result!r}; expected a CheckResult"),
                thread.elapsed,
            )
        result = CheckResult(
            status,
            str(getattr(result, "detail", "")),
            getattr(result, "value", None),
            getattr(result, "threshold", None),
        )
    return _report(result, thread.elapsed)


def run_checks(
    app: Any, now: datetime | None = None, timeout: float | None = None
) -> dict[str, Any]:
    """Run every check concurrently, each bounded by `timeout` (HEALTH_CHECK_TIMEOUT_SECONDS).

    Returns `{"status", "checked_at", "checks": {name: {status, detail, value,
    threshold, duration_ms}}}`; the overall status is the worst check's.
    """
    settings = app.runtime.settings_for("health")
    timeout = float(timeout if timeout is not None else settings.check_timeout_seconds)
    now = now or utcnow()
    ctx = CheckContext(app=app, db=app.runtime.db, now=now, timeout=timeout)
    checks, reports = collect_checks(app)
    threads = [(name, _CheckThread(check, ctx)) for name, check in checks]
    started = time.monotonic()
    for _name, thread in threads:
        thread.start()
    for name, thread in threads:
        thread.join(max(0.0, started + timeout - time.monotonic()))
        reports[name] = _outcome(thread, timeout)
    ordered = {name: reports[name] for name in sorted(reports)}
    return {
        "status": worst([r["status"] for r in ordered.values()]),
        "checked_at": now.isoformat(),
        "checks": ordered,
    }
