"""banktasks core: a thin Celery app built from pluggy plugins.

Plugin authors import from here: `hookimpl`, `hookspec`, `task`, `RetryPolicy`,
`Schedule`, `PluginSettings`, `current`, `session_scope`, `get_logger`.
`celery -A core worker` finds the app as `core.app` (built lazily).
"""

from __future__ import annotations

from typing import Any

from core.errors import (
    BanktasksError,
    ConfigError,
    PluginDisabledError,
    TaskArgumentError,
    UnknownTaskError,
)
from core.logging import get_logger
from core.markers import hookimpl, hookspec
from core.ratelimit import SubmissionRateLimited, SubmitLimit
from core.retry import RetryPolicy
from core.runtime import Runtime, current
from core.schedule import Schedule
from core.settings import PluginSettings, Settings, load_settings
from core.taskdef import TaskDef, task


def session_scope() -> Any:
    """A commit-or-rollback database session on the current app's database."""
    return current().db.session()


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Build a Celery app from settings and plugins (see `core.app.create_app`)."""
    from core.app import create_app as _create_app

    return _create_app(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name in {"app", "celery"}:
        from core.app import get_app_for_celery

        return get_app_for_celery()
    raise AttributeError(f"module 'core' has no attribute {name!r}")


__all__ = [
    "BanktasksError",
    "ConfigError",
    "PluginDisabledError",
    "PluginSettings",
    "RetryPolicy",
    "Runtime",
    "Schedule",
    "Settings",
    "SubmissionRateLimited",
    "SubmitLimit",
    "TaskArgumentError",
    "TaskDef",
    "UnknownTaskError",
    "create_app",
    "current",
    "get_logger",
    "hookimpl",
    "hookspec",
    "load_settings",
    "session_scope",
    "task",
]
