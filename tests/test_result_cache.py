"""Result caching: identical arguments within the TTL return the stored result."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from pydantic import Field

from banktasks_testing import fake_plugin
from core import PluginSettings, task
from core.resultcache import PREFIX, clear

RUNS = "cache-test:runs"


class CachedSettings(PluginSettings):
    """Settings of the test plugin."""

    result_cache_seconds: int | None = Field(None, ge=0, description="Override of the TTL")


def _plugin(ttl: Any = 60, version: str = "1") -> Any:
    from core import current_app

    def lookup_rate(currency: str, day: str = "2026-12-01") -> dict[str, Any]:
        """A read-only lookup; counts its runs."""
        runs = current_app().redis_client().incr(RUNS)
        if currency == "XXX":
            raise ValueError("no such currency")
        return {"currency": currency, "day": day, "run": runs}

    return fake_plugin(
        "cached",
        register_tasks=lambda: [task(lookup_rate, cache_ttl=ttl, cache_version=version)],
        register_settings=lambda: ("cached", CachedSettings),
    )


def _call(app: Any, **kwargs: Any) -> Any:
    return app.tasks["cached.lookup_rate"].apply(kwargs=kwargs).get()


def _runs(app: Any) -> int:
    return int(app.redis_client().get(RUNS) or 0)


def test_identical_arguments_within_the_ttl_do_not_run_again(make_app: Any) -> None:
    app = make_app(("cached", _plugin()))
    first = _call(app, currency="EUR")
    assert _call(app, currency="EUR") == first
    assert _call(app, currency="EUR", day="2026-12-01") == first, "defaults are part of the key"
    assert _runs(app) == 1
    assert _call(app, currency="CHF")["run"] == 2, "other arguments run"
    assert _runs(app) == 2


def test_an_entry_expires_with_its_ttl(make_app: Any) -> None:
    app = make_app(("cached", _plugin(ttl=timedelta(seconds=1))))
    _call(app, currency="EUR")
    time.sleep(1.2)
    assert _call(app, currency="EUR")["run"] == 2


def test_failures_are_not_stored(make_app: Any) -> None:
    app = make_app(("cached", _plugin()))
    for _ in range(2):
        with pytest.raises(ValueError, match="no such currency"):
            _call(app, currency="XXX")
    assert _runs(app) == 2


def test_a_new_cache_version_and_clear_invalidate(make_app: Any) -> None:
    app = make_app(("cached", _plugin(version="1")))
    _call(app, currency="EUR")
    app.runtime.tasks["cached.lookup_rate"].cache_version = "2"  # as a new release declares
    assert _call(app, currency="EUR")["run"] == 2
    assert clear(app.redis_client(), "cached.lookup_rate") == 2
    assert app.redis_client().keys(f"{PREFIX}*") == []
    assert _call(app, currency="EUR")["run"] == 3


@pytest.mark.parametrize(
    ("settings", "plugin_settings"),
    [({"banktasks_result_cache": False}, {}), ({}, {"cached": {"result_cache_seconds": 0}})],
)
def test_operators_switch_it_off(
    make_app: Any, settings: dict[str, Any], plugin_settings: dict[str, Any]
) -> None:
    app = make_app(("cached", _plugin()), plugin_settings=plugin_settings, **settings)
    _call(app, currency="EUR")
    _call(app, currency="EUR")
    assert _runs(app) == 2
    assert app.redis_client().keys(f"{PREFIX}*") == []


def test_the_plugin_setting_sets_the_ttl(make_app: Any) -> None:
    app = make_app(("cached", _plugin()), plugin_settings={"cached": {"result_cache_seconds": 7}})
    _call(app, currency="EUR")
    [key] = app.redis_client().keys(f"{PREFIX}*")
    assert 0 < app.redis_client().ttl(key) <= 7


@pytest.mark.parametrize("bad", [0, -5, "60", True])
def test_a_bad_ttl_is_refused_where_the_task_is_declared(bad: Any) -> None:
    def f() -> int:
        """Nothing."""
        return 1

    with pytest.raises(ValueError, match=r"cache_ttl=.* is not a number of seconds >= 1"):
        task(f, cache_ttl=bad)
