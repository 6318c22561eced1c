"""Retry policy: DB connection and file-system errors retry (3 times, backoff); others don't."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import DisconnectionError, OperationalError

import plugins.reports.tasks as reports_tasks
from banktasks_testing import assert_retry_policy
from core import TaskArgumentError
from plugins.reports import RETRY

from .helpers import DAY, reports_dir, stored_rows

TASK = "reports.generate_daily_reports"


def _flaky(
    monkeypatch: pytest.MonkeyPatch, name: str, error: BaseException, times: int
) -> list[int]:
    """Make `plugins.reports.tasks.<name>` raise `error` for its first `times` calls."""
    real = getattr(reports_tasks, name)
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(reports_tasks, name, wrapper)
    return calls


def test_celery_options_of_the_task(reports_app: Any) -> None:
    assert_retry_policy(
        reports_app,
        TASK,
        max_retries=3,
        retry_on=(OperationalError, DisconnectionError, OSError),
        backoff=30,
        backoff_max=600,
    )
    task = reports_app.tasks[TASK]
    assert task.retry_jitter is True
    assert task.acks_late is True
    assert TaskArgumentError in task.dont_autoretry_for
    assert [RETRY.countdown(n) <= 30 * 2**n for n in range(3)] == [True, True, True]
    assert RETRY.longest_wait == 120


DB_DOWN = OperationalError("SELECT 1", {}, Exception("connection refused"))


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("builtin_sections", DB_DOWN),
        ("builtin_sections", DisconnectionError("server closed the connection")),
        ("write_files", OSError(28, "No space left on device")),
        ("upsert_report", DB_DOWN),
    ],
)
def test_transient_errors_are_retried_then_succeed(
    reports_app: Any, monkeypatch: pytest.MonkeyPatch, where: str, error: BaseException
) -> None:
    calls = _flaky(monkeypatch, where, error, times=2)
    result = reports_app.tasks[TASK].apply(kwargs={"report_date": DAY.isoformat()})
    assert result.successful(), result.result
    assert result.result["report_date"] == "2024-01-31"
    assert len(calls) == 3
    (row,) = stored_rows(reports_app)
    assert row.runs == 1


def test_gives_up_after_three_retries(reports_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _flaky(monkeypatch, "builtin_sections", DB_DOWN, times=99)
    result = reports_app.tasks[TASK].apply(kwargs={"report_date": DAY.isoformat()})
    assert result.failed()
    assert isinstance(result.result, OperationalError)
    assert len(calls) == 4  # the first try and three retries
    assert stored_rows(reports_app) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"report_date": "2999-01-01"},
        {"report_date": DAY.isoformat(), "formats": ["pdf"]},
    ],
)
def test_argument_errors_are_never_retried(
    reports_app: Any, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any]
) -> None:
    attempts = _flaky(monkeypatch, "current", RuntimeError("unused"), times=0)
    result = reports_app.tasks[TASK].apply(kwargs=kwargs)
    assert result.failed()
    assert isinstance(result.result, TaskArgumentError)
    assert len(attempts) <= 1  # refused by the argument check (0) or the first try (1), once
    assert not reports_dir(reports_app).exists()
    assert stored_rows(reports_app) == []


def test_bad_arguments_raise_in_the_caller_before_sending(reports_app: Any) -> None:
    with pytest.raises(TaskArgumentError, match="report_date"):
        reports_app.tasks[TASK].delay(report_date="not a date")
    queued = reports_app.redis_client().llen("reports")
    assert queued == 0


def test_other_errors_fail_at_once(reports_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _flaky(monkeypatch, "builtin_sections", ZeroDivisionError("bug"), times=99)
    result = reports_app.tasks[TASK].apply(kwargs={"report_date": DAY.isoformat()})
    assert result.failed()
    assert len(calls) == 1
