"""The README's check examples work as written (the dict one with its own settings,
its test, and the CheckResult one)."""

from __future__ import annotations

import os
import re
import time
import types
from pathlib import Path
from typing import Any

import plugins.health
from plugins.health import run_checks

from .helpers import checks_plugin

README = Path(plugins.health.__file__).parent / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _example(marker: str, name: str) -> types.ModuleType:
    (source,) = [block for block in _blocks() if marker in block]
    module = types.ModuleType(name)
    exec(compile(source, f"{README}:{marker}", "exec"), module.__dict__)
    return module


def test_readme_dict_check_uses_only_core_and_its_own_settings(health_app_with: Any) -> None:
    acme = _example("def register_health_checks(", "acme_checks")
    source = next(b for b in _blocks() if "def register_health_checks(" in b)
    assert "plugins." not in source  # the rule: no import of another plugin
    own = acme.AcmeChecksSettings.__annotations__  # fields it declares (not PluginSettings')
    assert own and all(acme.AcmeChecksSettings.model_fields[f].description for f in own)

    plenty = health_app_with(
        ("acme_checks", acme), plugin_settings={"acme_checks": {"min_free_gb": 0.001}}
    )
    check = run_checks(plenty)["checks"]["acme_disk_space"]
    assert (check["status"], check["threshold"]) == ("ok", 0.001)
    assert check["detail"].endswith(f"GB free under {plenty.runtime.settings.var_dir}")

    never = health_app_with(
        ("acme_checks", acme), plugin_settings={"acme_checks": {"min_free_gb": 1e12}}
    )
    check = run_checks(never)["checks"]["acme_disk_space"]
    assert (check["status"], check["threshold"]) == ("down", 1e12)


def test_readme_test_example_passes(make_app: Any) -> None:
    acme = _example("def register_health_checks(", "acme_checks")
    example = _example("def test_disk_space(", "test_acme_checks")

    def make_app_with_acme(*specs: Any, **options: Any) -> Any:
        # "acme_checks" is not installed here: give the README's module under that name.
        named = [("acme_checks", acme) if spec == "acme_checks" else spec for spec in specs]
        return make_app(*named, **options)

    example.test_disk_space(make_app_with_acme)


def test_readme_checkresult_check(health_app_with: Any) -> None:
    example = _example("class FeedFreshness", "acme_feed")
    app = health_app_with(checks_plugin(example.FeedFreshness()))
    stamp = app.runtime.settings.var_dir / "acme-feed.stamp"
    missing = run_checks(app)["checks"]["acme_feed_freshness"]
    assert (missing["status"], missing["detail"]) == ("down", f"{stamp} is missing")

    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    fresh = run_checks(app)["checks"]["acme_feed_freshness"]
    assert (fresh["status"], fresh["threshold"]) == ("ok", 6)

    old = time.time() - 7 * 3600
    os.utime(stamp, (old, old))
    stale = run_checks(app)["checks"]["acme_feed_freshness"]
    assert (stale["status"], stale["value"]) == ("degraded", 7.0)
