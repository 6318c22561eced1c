"""A message that bypasses the caller's validation (`app.send_task` with bad kwargs, as a
rogue or outdated producer would send it) is refused by the worker: TaskArgumentError,
never retried, nothing written except its dead letter."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from banktasks_testing import send_unchecked, wait_for
from core.default_plugins.deadletters import INVALID, FailedTask
from core.default_plugins.seed import seed
from tests.security.conftest import USERS, activate_all, all_files, row_counts

pytestmark = pytest.mark.e2e

NOTIFY = "notifications.send_email_notification"
EXPORT = "export.export_transaction_data"
BYPASSING: list[tuple[str, dict[str, Any], str]] = [
    ("fraud.analyze_fraud_patterns", {"since": "last tuesday"}, "since"),
    (
        "fraud.analyze_fraud_patterns",
        {"since": "2024-01-02T00:00:00", "until": "2024-01-01T00:00:00"},
        "must be before",
    ),
    ("fraud.analyze_fraud_patterns", {"since": "0001-01-01T00:00:00+14:00"}, "out of range"),
    ("reports.generate_daily_reports", {"formats": ["../../etc/passwd"]}, "unknown report"),
    ("reports.generate_daily_reports", {"report_date": "2024-02-30"}, "report_date"),
    ("reports.generate_daily_reports", {"report_date": "9999-12-31"}, "in the future"),
    (
        "notifications.send_email_notification",
        {"user_id": 1, "subject": "Hi\r\nBcc: victim@evil.test", "message": "m"},
        "line break",
    ),
    (
        "notifications.send_email_notification",
        {"user_id": 2**64, "subject": "Hi", "message": "m"},
        "user_id",
    ),
    (
        "notifications.send_admin_email",
        {"subject": "Hi", "message": "m", "to": "x@evil.test"},
        "to",
    ),
    (
        "export.export_transaction_data",
        {
            "user_id": 1,
            "start_date": "2024-01-01",
            "end_date": "2024-01-02",
            "export_format": "../x",
        },
        "not a format name",
    ),
    (
        "export.export_transaction_data",
        {"user_id": 1, "start_date": "9999-12-31", "end_date": "9999-12-31"},
        "out of range",
    ),
    ("export.export_transaction_data", {"user_id": 1, "start_date": "2024-01-01"}, "end_date"),
    ("health.system_health_check", {"verbose": True}, "verbose"),
]
"""(task, kwargs the caller would refuse, what the worker's error says)."""


def dead_letters(app: Any) -> dict[str, FailedTask]:
    with app.runtime.db.session() as session:
        return {row.task_id: row for row in session.scalars(select(FailedTask))}


def test_worker_refuses_bad_messages_once_and_writes_nothing(e2e: Any) -> None:
    app = e2e.app()
    seed(app.runtime.db, users=USERS, transactions=200, days=30)
    activate_all(app)
    worker = e2e.start_worker(concurrency=2)
    var_dir = app.runtime.settings.var_dir
    files_before, rows_before = all_files(var_dir), row_counts(app)

    for name, kwargs, _says in BYPASSING:  # the caller refuses every one of them …
        with pytest.raises(Exception) as refused:
            app.tasks[name].delay(**kwargs)
        assert type(refused.value).__name__ == "TaskArgumentError"
    # … so send them as a producer that skips validation would
    sent = [
        (send_unchecked(app, name, kwargs=kwargs), name, says) for name, kwargs, says in BYPASSING
    ]
    # and two that only the worker can refuse: the database knows no such user
    unknown = USERS + 1
    for name, kwargs in [
        (NOTIFY, {"user_id": unknown, "subject": "Hi", "message": "m"}),
        (EXPORT, {"user_id": unknown, "start_date": "2024-01-01", "end_date": "2024-01-02"}),
    ]:
        sent.append((app.tasks[name].delay(**kwargs), name, "no such user"))

    for result, name, says in sent:
        wait_for(result.ready, 60, f"{name} to finish")
        assert result.failed(), (name, result.result)
        error = result.result
        assert type(error).__name__ == "TaskArgumentError", (name, error)
        assert says in str(error), (name, str(error))

    letters = wait_for(
        lambda: len(dead_letters(app)) == len(sent) and dead_letters(app), 15, "dead letters"
    )
    for result, name, _says in sent:
        row = letters[result.id]
        assert (row.task_name, row.reason, row.attempts) == (name, INVALID, 1)

    time.sleep(1)  # a retry or redelivery would show up now
    log = worker.log()
    assert "Retry in" not in log and "retry:" not in log.lower()
    for result, _name, _says in sent:
        assert log.count(f"[{result.id}] received") == 1, "each message ran once"
    assert all_files(var_dir) == files_before, "a refused task wrote a file"
    rows_after = row_counts(app)
    assert rows_after.pop("core_failed_tasks") == rows_before.pop("core_failed_tasks") + len(sent)
    assert rows_after == rows_before, "a refused task wrote a row"
