"""What a check may return (CheckResult, a plain mapping, an object with the fields)
and the context it gets (its own plugin's settings in `ctx.settings`)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import Field

from banktasks_testing import fake_plugin
from core import PluginSettings
from plugins.health import (
    CheckContext,
    CheckResult,
    HealthSettings,
    PendingTransactionsCheck,
    run_checks,
)

from .helpers import NOW, Returns, add_pending, checks_plugin


class AcmeSettings(PluginSettings):
    """A third-party plugin's own settings."""

    max_queue_depth: int = Field(100, gt=0, description="Deeper than this → degraded")


class Records:
    """A check that records the context it was given and reports from its settings."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.contexts: list[CheckContext] = []

    def run(self, ctx: Any) -> dict[str, Any]:
        """Degraded when the (fake) depth 7 exceeds the plugin's own threshold."""
        self.contexts.append(ctx)
        limit = getattr(ctx.settings, "max_queue_depth", None)
        status = "degraded" if limit is not None and limit < 7 else "ok"
        return {"status": status, "detail": f"limit {limit}", "value": 7, "threshold": limit}


def test_health_check_gets_its_own_plugins_settings(health_app_with: Any) -> None:
    acme_check, bare_check = Records("acme_queue"), Records("bare_check")
    acme = fake_plugin(
        "acme",
        register_settings=lambda: ("acme", AcmeSettings),
        register_health_checks=lambda: [acme_check],
    )
    bare = fake_plugin("bare", register_health_checks=lambda: [bare_check])
    app = health_app_with(
        ("acme", acme), ("bare", bare), plugin_settings={"acme": {"max_queue_depth": 5}}
    )
    report = run_checks(app, now=NOW)

    (ctx,) = acme_check.contexts
    assert isinstance(ctx.settings, AcmeSettings)
    assert ctx.settings is app.runtime.settings_for("acme")
    assert ctx.settings.max_queue_depth == 5
    assert (ctx.app, ctx.db, ctx.now) == (app, app.runtime.db, NOW)
    assert report["checks"]["acme_queue"]["status"] == "degraded"
    assert report["checks"]["acme_queue"]["threshold"] == 5

    (bare_ctx,) = bare_check.contexts  # no register_settings: still a PluginSettings
    assert isinstance(bare_ctx.settings, PluginSettings)
    assert not isinstance(bare_ctx.settings, HealthSettings)
    assert bare_ctx.settings is app.runtime.settings_for("bare")
    assert report["checks"]["bare_check"]["status"] == "ok"

    # health's own built-ins still get HealthSettings (and the default threshold).
    assert isinstance(app.runtime.settings_for("health"), HealthSettings)
    assert report["checks"]["pending_transactions"]["threshold"] == 24


def test_health_builtin_check_reads_ctx_settings(app: Any) -> None:
    add_pending(app, NOW - timedelta(hours=4))  # the app's threshold is 24h: ok there
    ctx = CheckContext(
        app=app,
        db=app.runtime.db,
        now=NOW,
        timeout=5.0,
        settings=app.runtime.settings_for("health").model_copy(update={"pending_max_age_hours": 3}),
    )
    result = PendingTransactionsCheck().run(ctx)
    assert (result.status, result.value, result.threshold) == ("degraded", 1, 3)
    assert run_checks(app, now=NOW)["checks"]["pending_transactions"]["status"] == "ok"


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (
            {"status": "degraded", "detail": "3 stuck", "value": 3, "threshold": 2},
            {"status": "degraded", "detail": "3 stuck", "value": 3, "threshold": 2},
        ),
        ({"status": "ok"}, {"status": "ok", "detail": "", "value": None, "threshold": None}),
        (
            {"status": "down", "detail": None, "value": 1.5},
            {"status": "down", "detail": "", "value": 1.5, "threshold": None},
        ),
        (
            CheckResult("degraded", "as a class", value=2, threshold=1),
            {"status": "degraded", "detail": "as a class", "value": 2, "threshold": 1},
        ),
        (
            SimpleNamespace(status="ok", detail="duck", value=0, threshold=9),
            {"status": "ok", "detail": "duck", "value": 0, "threshold": 9},
        ),
        (
            SimpleNamespace(status="degraded"),
            {"status": "degraded", "detail": "", "value": None, "threshold": None},
        ),
    ],
    ids=["dict", "dict-status-only", "dict-none-detail", "CheckResult", "object", "object-min"],
)
def test_health_check_results_in_every_accepted_shape(
    health_app_with: Any, returned: Any, expected: dict[str, Any]
) -> None:
    app = health_app_with(checks_plugin(Returns("shape", returned)))
    report = run_checks(app)
    got = report["checks"]["shape"]
    assert {k: v for k, v in got.items() if k != "duration_ms"} == expected
    assert report["status"] == expected["status"]


@pytest.mark.parametrize(
    ("returned", "detail"),
    [
        (
            {"status": "fine", "detail": "?"},
            "run() returned status 'fine'; expected one of ok, degraded, down",
        ),
        ({"detail": "no status"}, "run() returned status None; expected one of ok, degraded, down"),
        (
            {"status": "ok", "treshold": 3},
            "run() returned a mapping with unknown key(s) treshold; expected a CheckResult",
        ),
        (
            SimpleNamespace(status="OK"),
            "run() returned status 'OK'; expected one of ok, degraded, down",
        ),
        (None, "run() returned None; expected a CheckResult"),
        ("ok", "run() returned 'ok'; expected a CheckResult"),
    ],
    ids=["bad-status", "no-status", "unknown-key", "object-bad-status", "none", "str"],
)
def test_health_a_bad_result_is_down_with_a_clear_detail(
    health_app_with: Any, returned: Any, detail: str
) -> None:
    app = health_app_with(checks_plugin(Returns("bad", returned)))
    report = run_checks(app)
    bad = report["checks"]["bad"]
    assert bad["status"] == "down"
    assert bad["detail"].startswith(detail), bad["detail"]
    assert report["status"] == "down"
