"""Run every registered check, each in its own thread with a deadline, and aggregate.

A check that raises is `down` with its error; one that is still running at the
deadline is `down` ("timed out") and left behind in a daemon thread, so a hung
dependency never hangs the task or the `banktasks health` probe. Each check gets
a context whose `settings` are those of the plugin that registered it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from core import Contribution
from core.db import utcnow
from core.logging import redact_text
from plugins.health.api import RESULT_FIELDS, STATUSES, CheckContext, CheckResult, worst
from plugins.health.settings import PLUGIN

HOOK = "register_health_checks"
EXPECTED = (
    "a CheckResult, or a mapping with 'status' (one of ok, degraded, down) and optionally "
    "'detail', 'value', 'threshold'"
)


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


def collect_checks(app: Any) -> tuple[list[Contribution], dict[str, dict[str, Any]]]:
    """Checks from `register_health_checks()`, each with the plugin that registered it,
    plus `down` reports for plugins whose registration failed and for duplicate or
    nameless checks (the first registration of a name wins)."""
    # call_each answers in pluggy's call order (last registered first): reverse it to
    # get registration order, then put the health plugin's own built-ins first.
    outcomes = list(reversed(app.runtime.plugins.call_each(HOOK)))
    outcomes.sort(key=lambda outcome: outcome.plugin != PLUGIN)
    checks: list[Contribution] = []
    broken: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    for outcome in outcomes:
        plugin = outcome.plugin
        if outcome.error is not None:
            broken[f"{plugin}:{HOOK}"] = _down(f"{HOOK}() failed: {_error(outcome.error)}")
            continue
        try:
            registered = list(outcome.result or [])
        except TypeError:
            broken[f"{plugin}:{HOOK}"] = _down(
                redact_text(f"{HOOK}() returned {outcome.result!r:.80}; expected a list of checks")
            )
            continue
        for check in registered:
            name = getattr(check, "name", None)
            if not isinstance(name, str) or not name or not callable(getattr(check, "run", None)):
                broken[f"{plugin}:{name or type(check).__name__}"] = _down(
                    redact_text(f"{check!r:.80} is not a HealthCheck (name + run(ctx))")
                )
            elif name in seen:
                broken[f"{name}@{plugin}"] = _down(
                    f"check name {name!r} is already registered by plugin {seen[name]!r}; "
                    "rename one of them"
                )
            else:
                seen[name] = plugin
                checks.append(Contribution(plugin, name, check))
    return checks, broken


def as_check_result(returned: Any) -> CheckResult:
    """What a check's `run()` returned, as a CheckResult.

    Accepts a CheckResult, a mapping with the keys `status` (required), `detail`,
    `value`, `threshold`, or any object with those attributes. Anything else, an
    unknown key or a status other than ok/degraded/down is a ValueError that says so.
    """
    if isinstance(returned, CheckResult):
        return returned
    if isinstance(returned, Mapping):
        unknown = sorted(str(key) for key in returned if key not in RESULT_FIELDS)
        if unknown:
            raise ValueError(
                f"run() returned a mapping with unknown key(s) {', '.join(unknown)}; "
                f"expected {EXPECTED}"
            )
        fields = dict(returned)
    elif hasattr(returned, "status"):
        fields = {key: getattr(returned, key, None) for key in RESULT_FIELDS}
    else:
        raise ValueError(f"run() returned {returned!r:.80}; expected {EXPECTED}")
    status = fields.get("status")
    if status not in STATUSES:
        raise ValueError(
            f"run() returned status {status!r:.40}; expected one of {', '.join(STATUSES)}"
        )
    detail = fields.get("detail")
    return CheckResult(
        status,
        "" if detail is None else str(detail),
        fields.get("value"),
        fields.get("threshold"),
    )


def _error(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")


def _down(detail: str) -> dict[str, Any]:
    return _report(CheckResult("down", detail), 0.0)


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
    try:
        result = as_check_result(thread.result)
    except ValueError as exc:
        result = CheckResult("down", redact_text(str(exc)))
    return _report(result, thread.elapsed)


def run_checks(
    app: Any, now: datetime | None = None, timeout: float | None = None
) -> dict[str, Any]:
    """Run every check concurrently, each bounded by `timeout` (HEALTH_CHECK_TIMEOUT_SECONDS).

    Each check's context carries the settings of the plugin that registered it.
    Returns `{"status", "checked_at", "checks": {name: {status, detail, value,
    threshold, duration_ms}}}`; the overall status is the worst check's.
    """
    runtime = app.runtime
    settings = runtime.settings_for(PLUGIN)
    timeout = float(timeout if timeout is not None else settings.check_timeout_seconds)
    now = now or utcnow()
    base = CheckContext(app=app, db=runtime.db, now=now, timeout=timeout)
    checks, reports = collect_checks(app)
    threads = [
        (c.name, _CheckThread(c.obj, replace(base, settings=runtime.settings_for(c.plugin))))
        for c in checks
    ]
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
