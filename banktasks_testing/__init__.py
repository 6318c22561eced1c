"""The banktasks testing kit (`pip install banktasks[testing]`).

Its pytest plugin (`banktasks_testing.plugin`, loaded through the `pytest11`
entry point) gives the fixtures `bt_env`, `make_app`, `session_broker`, `broker_url`, `e2e`,
`smtp_server`, `postgres_url` and `pg_database_url`. This package gives the
helpers: factories for test data, assertions about retry policies and
schedules, real processes (worker, SMTP server, PostgreSQL cluster).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from banktasks_testing.asserts import assert_not_scheduled, assert_retry_policy, assert_schedule
from banktasks_testing.factories import (
    make_account,
    make_transaction,
    make_transactions,
    make_user,
    seed_data,
)
from banktasks_testing.http import http_status
from banktasks_testing.processes import (
    PgCluster,
    SMTPRecorder,
    WorkerProcess,
    free_port,
    pg_bindir,
    wait_for,
)
from core import hookimpl


def send_unchecked(
    app: Any, name: str, args: Any = None, kwargs: Any = None, **options: Any
) -> Any:
    """Send task `name` the way a producer without banktasks would: plain Celery's
    `send_task`, none of banktasks' checks (arguments, size, limits). For tests of what
    the worker does with a message that bypassed the caller; returns the AsyncResult."""
    from celery import Celery

    return Celery.send_task(app, name, args, kwargs, **options)


def fake_plugin(name: str, **hooks: Any) -> ModuleType:
    """A plugin module object named `name` whose hooks are the given functions.

    `fake_plugin("rec", on_fraud_alert=lambda alert: seen.append(alert))`
    """
    module = ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


__all__ = [
    "PgCluster",
    "SMTPRecorder",
    "WorkerProcess",
    "assert_not_scheduled",
    "assert_retry_policy",
    "assert_schedule",
    "fake_plugin",
    "free_port",
    "http_status",
    "make_account",
    "make_transaction",
    "make_transactions",
    "make_user",
    "pg_bindir",
    "seed_data",
    "send_unchecked",
    "wait_for",
]
