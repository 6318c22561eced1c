"""The task: default date, argument errors (nothing written), files, idempotent re-runs."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import plugins.reports.tasks as reports_tasks
from core import ConfigError, TaskArgumentError
from plugins.reports import generate_daily_reports

from .helpers import DAY, add_account, add_tx, at, reports_dir, stored_rows


def _freeze(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setattr(reports_tasks, "utcnow", lambda: moment)


def _nothing_written(app: Any) -> None:
    folder = reports_dir(app)
    assert not folder.exists() or list(folder.iterdir()) == []
    assert stored_rows(app) == []


def test_default_date_is_the_previous_utc_day(reports_app: Any) -> None:
    before = (datetime.now(UTC) - timedelta(days=1)).date()
    result = generate_daily_reports()
    after = (datetime.now(UTC) - timedelta(days=1)).date()
    assert result["report_date"] in {before.isoformat(), after.isoformat()}
    assert Path(result["files"]["json"]).name == f"daily-report-{result['report_date']}.json"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2024, 3, 1, 0, 0, 0, tzinfo=UTC), date(2024, 2, 29)),  # just after midnight
        (datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), date(2024, 2, 28)),  # just before
        (datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC), date(2024, 12, 31)),
    ],
)
def test_default_date_at_the_midnight_boundary(
    reports_app: Any, monkeypatch: pytest.MonkeyPatch, now: datetime, expected: date
) -> None:
    _freeze(monkeypatch, now)
    result = generate_daily_reports()
    assert result["report_date"] == expected.isoformat()
    assert [r.report_date for r in stored_rows(reports_app)] == [expected]


def test_today_is_allowed_tomorrow_is_the_future(
    reports_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _freeze(monkeypatch, datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC))
    with pytest.raises(TaskArgumentError, match=r"report_date=2024-02-01 is in the future"):
        generate_daily_reports(report_date=date(2024, 2, 1))
    _nothing_written(reports_app)
    assert generate_daily_reports(report_date=DAY)["report_date"] == "2024-01-31"


def test_unknown_format_lists_the_formats_and_writes_nothing(reports_app: Any) -> None:
    with pytest.raises(TaskArgumentError) as err:
        generate_daily_reports(report_date=DAY, formats=["json", "pdf"])
    assert "unknown report format(s) 'pdf'" in str(err.value)
    assert "available formats: csv, html, json" in str(err.value)
    _nothing_written(reports_app)


def test_empty_format_list_and_bad_argument_types_are_refused(reports_app: Any) -> None:
    with pytest.raises(TaskArgumentError, match="formats=\\[\\] asks for no format"):
        generate_daily_reports(report_date=DAY, formats=[])
    with pytest.raises(TaskArgumentError, match="report_date"):
        generate_daily_reports(report_date="31/01/2024")
    with pytest.raises(TaskArgumentError, match="unexpected keyword argument 'fmt'"):
        generate_daily_reports(fmt="json")
    _nothing_written(reports_app)


def test_iso_string_date_and_a_subset_of_formats(reports_app: Any) -> None:
    result = generate_daily_reports(report_date="2024-01-31", formats=["JSON", "json"])
    assert list(result["files"]) == ["json"]
    assert sorted(p.name for p in reports_dir(reports_app).iterdir()) == [
        "daily-report-2024-01-31.json"
    ]


def test_result_and_stored_row(reports_app: Any, in_session: Any) -> None:
    in_session(lambda s: add_tx(s, add_account(s), "12.34", at(DAY)))
    result = generate_daily_reports(report_date=DAY)
    assert set(result) >= {"report_date", "files", "emailed", "totals"}
    assert result["emailed"] is False
    assert result["totals"] == {"transactions": 1, "sums": {"USD": "12.34"}}
    assert result["sections"] == ["transactions", "customers"]
    assert json.loads(json.dumps(result)) == result  # JSON-safe as it is
    folder = reports_dir(reports_app).resolve()
    for fmt, ext in (("json", "json"), ("csv", "csv"), ("html", "html")):
        assert result["files"][fmt] == str(folder / f"daily-report-2024-01-31.{ext}")
        assert oct(os.stat(result["files"][fmt]).st_mode & 0o777) == "0o600"
    (row,) = stored_rows(reports_app)
    assert row.report_date == DAY
    assert row.files == result["files"]
    assert row.totals == result["totals"]
    assert row.runs == 1
    assert row.generated_at.isoformat() == result["generated_at"]
    on_disk = json.loads(Path(result["files"]["json"]).read_text())
    assert on_disk["sections"] == row.sections


def test_rerun_replaces_the_day_never_duplicates(reports_app: Any, in_session: Any) -> None:
    account_id = in_session(lambda s: add_account(s).id)

    def add(amount: str) -> None:
        def fill(session: Any) -> None:
            from core.models import Account

            add_tx(session, session.get(Account, account_id), amount, at(DAY))

        in_session(fill)

    add("1.00")
    first = generate_daily_reports(report_date=DAY)
    add("2.50")  # a late transaction arrives; the day is re-run
    second = generate_daily_reports(report_date=DAY)

    assert first["files"] == second["files"]
    (row,) = stored_rows(reports_app)
    assert row.runs == 2
    assert row.totals == {"transactions": 2, "sums": {"USD": "3.50"}}
    on_disk = json.loads(Path(second["files"]["json"]).read_text())
    assert on_disk["sections"]["transactions"]["by_currency"]["USD"]["sum"] == "3.50"
    assert on_disk["generated_at"].replace("Z", "+00:00") == second["generated_at"]
    names = sorted(p.name for p in reports_dir(reports_app).iterdir())
    assert names == [f"daily-report-2024-01-31.{ext}" for ext in ("csv", "html", "json")]


def test_rerun_with_fewer_formats_removes_the_stale_files(reports_app: Any) -> None:
    generate_daily_reports(report_date=DAY)
    generate_daily_reports(report_date=DAY - timedelta(days=1))
    result = generate_daily_reports(report_date=DAY, formats=["csv"])
    names = sorted(p.name for p in reports_dir(reports_app).iterdir())
    assert names == [
        "daily-report-2024-01-30.csv",
        "daily-report-2024-01-30.html",
        "daily-report-2024-01-30.json",
        "daily-report-2024-01-31.csv",
    ]
    row = next(r for r in stored_rows(reports_app) if r.report_date == DAY)
    assert row.files == result["files"] == {"csv": result["files"]["csv"]}
    assert len(stored_rows(reports_app)) == 2


def test_a_failed_write_leaves_no_temp_file_and_no_row(
    reports_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.files

    real_replace = os.replace
    calls: list[str] = []

    def failing_replace(src: str, dst: Any) -> None:
        calls.append(str(dst))
        if str(dst).endswith(".html"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(core.files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        generate_daily_reports(report_date=DAY)
    leftovers = [p.name for p in reports_dir(reports_app).iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert stored_rows(reports_app) == []
    assert any(c.endswith(".html") for c in calls)


def test_reports_dir_setting(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere" / "reports"
    monkeypatch.setenv("REPORTS_DIR", str(target))
    app = make_app("reports")
    assert app.runtime.settings_for("reports").dir == target
    result = generate_daily_reports(report_date=DAY)
    assert Path(result["files"]["csv"]).parent == target.resolve()
    assert not (app.runtime.settings.var_dir / "reports").exists()


def test_reports_formats_setting_is_the_default(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORTS_FORMATS", "html, json")
    make_app("reports")
    assert list(generate_daily_reports(report_date=DAY)["files"]) == ["html", "json"]
    assert list(generate_daily_reports(report_date=DAY, formats=["csv"])["files"]) == ["csv"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REPORTS_FORMATS", "json,pdf", "REPORTS_FORMATS=json,pdf: unknown report format(s) 'pdf'"),
        ("REPORTS_FORMATS", "json,PDF!", "REPORTS_FORMATS"),
        ("REPORTS_DIR", "__FILE__", "exists and is not a directory"),
        ("REPORTS_SCHEDULE", "every day", "REPORTS_SCHEDULE='every day'"),
    ],
)
def test_bad_settings_stop_start_up(
    make_app: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    if value == "__FILE__":
        value = str(tmp_path / "a-file")
        Path(value).write_text("x")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_app("reports")


def test_blank_settings_mean_the_defaults(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPORTS_FORMATS", "")
    monkeypatch.setenv("REPORTS_DIR", "")
    app = make_app("reports")
    settings = app.runtime.settings_for("reports")
    assert settings.formats is None
    assert (
        settings.reports_dir(app.runtime.settings.var_dir)
        == app.runtime.settings.var_dir / "reports"
    )
