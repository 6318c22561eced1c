"""Fixtures for the notifications tests: an app with only this plugin, and test users."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from notifications_helpers import add_users

import plugins.notifications


@pytest.fixture
def notif_app(make_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`notif_app(EMAIL_BACKEND="smtp", …)`: env vars set, app built, users 1 to 4 added.

    Users: 1 active (user1@example.com), 2 inactive, 3 active without an address,
    4 active (user4@example.com). `plugins=[…]` and `database_url=…` are passed on.
    """

    def factory(
        plugins: list[object] | None = None, database_url: str | None = None, **env: str
    ) -> Any:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        overrides = {"database_url": database_url} if database_url else {}
        app = make_app(plugins=plugins or [_notifications()], **overrides)
        add_users(app)
        return app

    return factory


def _notifications() -> Any:
    return plugins.notifications
