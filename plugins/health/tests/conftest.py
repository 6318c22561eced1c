"""Fixtures for the health plugin's tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def health_app_with(make_app: Callable[..., Any]) -> Callable[..., Any]:
    """`health_app_with(*plugins, plugin_settings=..., **core_settings)`: `make_app("health",
    *plugins, ...)` with the app's broker started (the `broker` check is ok; with a
    `redis_url` given there is none to start)."""

    def build(*plugins: Any, **options: Any) -> Any:
        app = make_app("health", *plugins, **options)
        app.ensure_broker()
        return app

    return build


@pytest.fixture
def app(health_app_with: Callable[..., Any]) -> Any:
    """An app with the health plugin alone (and the default plugins), broker running."""
    return health_app_with()


@pytest.fixture
def live_redis_url(app: Any) -> str:
    """The URL of a running broker (the test app's), for apps built without `make_app`."""
    return str(app.conf.broker_url)
