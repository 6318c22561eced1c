"""banktasks core: a thin Celery app built from pluggy plugins.

This package is the plugin API: everything a plugin may use is exported here,
or by one of the documented modules `core.db` (engine, money and time columns),
`core.models` (User, Account, Transaction), `core.files` (atomic files),
`core.logging` (redaction), `core.validators` (shared setting and argument
checks) and `core.sources` (`DataTables`: the users, accounts and transactions to
read, banktasks' own tables or a bank's, `current().data`). Importing `core` builds
no app; the default app is `core.celery.app` (`celery -A core worker` finds it, and
`from core import app` returns it).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from core.startup import frozen_imports

with frozen_imports():  # the stack's imports make objects, not garbage: see core.startup
    from sqlalchemy.orm import Session

    from core.errors import (
        BanktasksError,
        ConfigError,
        NoAppError,
        PluginDisabledError,
        TaskArgumentError,
        UnknownTaskError,
    )
    from core.factory import (
        SENT_AT_HEADER,
        BanktasksCelery,
        BanktasksTask,
        create_app,
        message_header,
    )
    from core.logging import get_logger
    from core.markers import hookimpl, hookspec
    from core.plugins import Contribution, HookOutcome, PluginSet
    from core.priority import queue_lists
    from core.ratelimit import SubmissionRateLimited, SubmitLimit
    from core.retry import RetryPolicy
    from core.runtime import Runtime, current, current_app
    from core.schedule import Schedule
    from core.settings import CommaList, PluginSettings, Settings, load_settings
    from core.sources import DataTables
    from core.taskdef import TaskDef, task
    from core.timelimits import TaskTimeLimitExceeded


def session_scope() -> AbstractContextManager[Session]:
    """A commit-or-rollback database session on the current app's database."""
    return current().db.session()


def data_scope(session: Session | None = None) -> AbstractContextManager[Session]:
    """A session to read `current().data` (users, accounts, transactions) in: `session`
    itself when they live with banktasks' tables, else a read-only session of the bank's
    database (`DATA_MAPPING`)."""
    return current().data_session(session)


def __getattr__(name: str) -> Any:
    if name == "app":  # Celery's `-A core` and `from core import app`: the default app
        from core.celery import default_app

        return default_app()
    raise AttributeError(f"module 'core' has no attribute {name!r}")


__all__ = [
    "SENT_AT_HEADER",
    "BanktasksCelery",
    "BanktasksError",
    "BanktasksTask",
    "CommaList",
    "ConfigError",
    "Contribution",
    "DataTables",
    "HookOutcome",
    "NoAppError",
    "PluginDisabledError",
    "PluginSet",
    "PluginSettings",
    "RetryPolicy",
    "Runtime",
    "Schedule",
    "Settings",
    "SubmissionRateLimited",
    "SubmitLimit",
    "TaskArgumentError",
    "TaskDef",
    "TaskTimeLimitExceeded",
    "UnknownTaskError",
    "create_app",
    "current",
    "current_app",
    "data_scope",
    "get_logger",
    "hookimpl",
    "hookspec",
    "load_settings",
    "message_header",
    "queue_lists",
    "session_scope",
    "task",
]
