"""Fixtures for the reports plugin's tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def reports_app(make_app: Callable[..., Any]) -> Any:
    """An app with the reports plugin alone (no notifications, no fraud)."""
    return make_app("reports")


@pytest.fixture
def in_session(reports_app: Any) -> Callable[..., Any]:
    """`in_session(fn)` runs `fn(session)` in a committed session of the reports app."""

    def run(fn: Callable[[Any], Any]) -> Any:
        with reports_app.runtime.db.session() as session:
            return fn(session)

    return run
