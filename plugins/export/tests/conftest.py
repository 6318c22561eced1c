"""Fixtures for the export plugin's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Any:
    """An app with the export plugin alone (no notifications)."""
    return make_app("export")


@pytest.fixture
def export_dir(app: Any) -> Path:
    """The default EXPORT_DIR of `app`: `<var_dir>/exports`, resolved."""
    return Path(app.runtime.settings.var_dir).resolve() / "exports"


@pytest.fixture
def app_with(app: Any, make_app: Callable[..., Any]) -> Callable[[list[Any]], Any]:
    """Factory: a second app on the same database with extra plugin objects.

    The new app becomes the current one; an extra object with an `app` attribute
    (a listener that reads the database) is given the new app.
    """

    def build(extra: list[Any]) -> Any:
        new = make_app("export", *extra)
        for obj in extra:
            if hasattr(obj, "app"):
                obj.app = new
        return new

    return build


@pytest.fixture
def retries() -> Iterator[list[Any]]:
    """Reasons of the retries Celery schedules during the test (signal `task_retry`)."""
    from celery.signals import task_retry

    seen: list[Any] = []

    def record(sender: Any = None, reason: Any = None, **_: Any) -> None:
        seen.append(reason)

    task_retry.connect(record, weak=False)
    yield seen
    task_retry.disconnect(record)
