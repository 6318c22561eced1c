"""Fixtures for the notifications tests: an app with this plugin, and test users."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from plugins.notifications.tests.helpers import add_users


@pytest.fixture
def notif_app(make_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`notif_app(*plugins, plugin_settings=None, database_url=None, **env)` → an app.

    The app has the `notifications` plugin, the default plugins and the extra
    `plugins` given (entry-point names, `(name, module)` pairs or modules). The
    keyword arguments in upper case are set as environment variables first (as an
    operator would); `plugin_settings` is passed on to `make_app`. Users 1 to 4 are
    added: 1 active (user1@example.com), 2 inactive, 3 active without an address,
    4 active (user4@example.com).
    """

    def factory(
        *plugins: Any,
        plugin_settings: dict[str, dict[str, Any]] | None = None,
        database_url: str | None = None,
        **env: str,
    ) -> Any:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        overrides = {"database_url": database_url} if database_url else {}
        app = make_app("notifications", *plugins, plugin_settings=plugin_settings, **overrides)
        add_users(app)
        return app

    return factory
