"""Hooks: sections from other plugins (one raising), on_report_generated, neighbours absent."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import plugins.reports
from banktasks_testing import assert_not_scheduled, assert_schedule
from core import hookimpl
from plugins.reports import DailyReport, generate_daily_reports, hookspecs
from plugins.reports import plugin as reports_plugin

from .helpers import DAY, add_account, add_tx, at

TASK = "reports.generate_daily_reports"


class AcmeSections:
    """A neighbour that adds one section, like fraud does."""

    banktasks_name = "acme"

    def __init__(self) -> None:
        self.dates: list[date] = []

    @hookimpl
    def register_report_sections(self, report_date: date) -> tuple[str, dict[str, Any]]:
        self.dates.append(report_date)
        return (
            "acme",
            {"alerts_opened": 2, "by_rule": {"velocity": 2}, "exposure": Decimal("1.50")},
        )


class ManySections:
    banktasks_name = "many"

    @hookimpl
    def register_report_sections(self, report_date: date) -> list[tuple[str, dict[str, Any]]]:
        return [("many_a", {"day": report_date.isoformat()}), ("many_b", {})]


class NoSection:
    banktasks_name = "quiet"

    @hookimpl
    def register_report_sections(self, report_date: date) -> None:
        return None


class RaisingSection:
    banktasks_name = "broken"

    @hookimpl
    def register_report_sections(self, report_date: date) -> tuple[str, dict[str, Any]]:
        raise RuntimeError("section database exploded")


class ClashingSection:
    banktasks_name = "clash"

    @hookimpl
    def register_report_sections(self, report_date: date) -> tuple[str, dict[str, Any]]:
        return ("transactions", {"count": -1})


class BadShape:
    banktasks_name = "badshape"

    @hookimpl
    def register_report_sections(self, report_date: date) -> Any:
        return {"not": "a pair"}


class Listener:
    """Records every report it is given; returns `answer` (truthy = an e-mail was queued)."""

    def __init__(self, name: str, answer: Any = None, fail: bool = False) -> None:
        self.banktasks_name = name
        self.answer = answer
        self.fail = fail
        self.reports: list[DailyReport] = []

    @hookimpl
    def on_report_generated(self, report: DailyReport) -> Any:
        self.reports.append(report)
        if self.fail:
            raise ConnectionError("mail queue down")
        return self.answer


def test_sections_from_other_plugins_and_one_that_raises(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    acme = AcmeSections()
    make_app(
        "reports",
        acme,
        ManySections(),
        NoSection(),
        RaisingSection(),
        ClashingSection(),
        BadShape(),
    )
    result = generate_daily_reports(report_date=DAY)
    assert acme.dates == [DAY]
    report = json.loads(Path(result["files"]["json"]).read_text())
    sections = report["sections"]
    assert sections["acme"] == {"alerts_opened": 2, "by_rule": {"velocity": 2}, "exposure": "1.50"}
    assert sections["many_a"] == {"day": "2024-01-31"}
    assert sections["many_b"] == {}
    assert sections["broken"] == {"error": "RuntimeError: section database exploded"}
    assert sections["badshape"]["error"].startswith("TypeError: register_report_sections returned")
    assert sections["transactions"]["count"] == 0  # the clash did not overwrite the built-in
    assert "quiet" not in sections and "clash" not in sections
    assert result["errors"]["sections"] == {
        "broken": "RuntimeError: section database exploded",
        "badshape": sections["badshape"]["error"],
        "clash:transactions": "section name 'transactions' is already taken; rename it",
    }
    assert list(sections)[:2] == ["transactions", "customers"]
    assert set(result["sections"]) == set(sections)


def test_on_report_generated_once_per_run_with_the_report(make_app: Any, in_session: Any) -> None:
    mailer = Listener("mailer", answer={"queued": "task-id-1"})
    silent = Listener("silent", answer=None)
    make_app("reports", mailer, silent)
    in_session(lambda s: add_tx(s, add_account(s), "7.77", at(DAY)))

    result = generate_daily_reports(report_date=DAY)
    assert result["emailed"] is True
    assert len(mailer.reports) == len(silent.reports) == 1
    report = mailer.reports[0]
    assert isinstance(report, DailyReport)
    assert report.report_date == DAY
    assert report.files == result["files"]
    assert report.totals == {"transactions": 1, "sums": {"USD": "7.77"}}
    assert report.generated_at.tzinfo is not None
    assert "total 7.77" in report.summary_text()

    generate_daily_reports(report_date=DAY)
    assert len(mailer.reports) == 2  # once per run


def test_emailed_is_false_when_no_listener_says_so(make_app: Any) -> None:
    silent = Listener("silent", answer={})
    make_app("reports", silent)
    assert generate_daily_reports(report_date=DAY)["emailed"] is False
    assert len(silent.reports) == 1


def test_a_listener_that_raises_does_not_fail_the_report(make_app: Any) -> None:
    broken = Listener("broken_mailer", fail=True)
    mailer = Listener("mailer", answer={"queued": "x"})
    make_app("reports", mailer, broken)
    result = generate_daily_reports(report_date=DAY)
    assert result["emailed"] is True
    assert result["errors"]["listeners"] == {"broken_mailer": "ConnectionError: mail queue down"}
    assert len(broken.reports) == len(mailer.reports) == 1
    assert Path(result["files"]["json"]).exists()


def test_reports_alone_from_entry_points_with_neighbours_disabled(make_app: Any) -> None:
    app = make_app(banktasks_plugins=["reports"])
    assert app.runtime.is_enabled("reports")
    assert not any(app.runtime.is_enabled(n) for n in ("notifications", "fraud"))
    result = generate_daily_reports(report_date=DAY)
    assert result["emailed"] is False
    assert result["sections"] == ["transactions", "customers"]
    from core.tasks import resolve

    assert resolve("generate_daily_reports", app).name == TASK


def test_task_schedule_and_queue(reports_app: Any) -> None:
    routes = reports_app.conf.task_routes
    assert routes[TASK] == {"queue": "reports"}
    assert_schedule(reports_app, "generate-daily-reports", task=TASK, cron="0 0 * * *", kwargs={})
    assert generate_daily_reports.example_kwargs() == {}


def test_schedule_can_be_moved_or_switched_off(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORTS_SCHEDULE", "30 2 * * *")
    app = make_app("reports")
    assert_schedule(app, "generate-daily-reports", task=TASK, cron="30 2 * * *")
    monkeypatch.setenv("REPORTS_SCHEDULE", "off")
    app = make_app("reports")
    assert_not_scheduled(app, "generate-daily-reports")


def test_hookspecs_are_documented_and_registered(reports_app: Any) -> None:
    for name in ("register_report_formats", "register_report_sections", "on_report_generated"):
        spec = getattr(hookspecs, name)
        assert spec.__doc__ and len(spec.__doc__) > 40, name
        assert getattr(reports_app.runtime.hook, name).spec is not None, name
    for name in ("ReportFormat", "DailyReport", "StoredReport", "ReportsSettings"):
        assert hasattr(plugins.reports, name)
    assert plugins.reports.StoredReport.__tablename__ == "reports_daily"


def test_cli_show_and_list(reports_app: Any, in_session: Any) -> None:
    @click.group()
    def root() -> None:
        pass

    reports_plugin.register_commands(root)
    runner = CliRunner()
    missing = runner.invoke(root, ["reports", "show", "2024-01-31"])
    assert missing.exit_code == 1
    assert "no report stored for 2024-01-31" in missing.output
    in_session(lambda s: add_tx(s, add_account(s), "3.21", at(DAY)))
    generate_daily_reports(report_date=DAY)
    shown = runner.invoke(root, ["reports", "show", "2024-01-31"])
    assert shown.exit_code == 0, shown.output
    assert "USD: 1 transactions, total 3.21" in shown.output
    latest = runner.invoke(root, ["reports", "show", "--json"])
    assert json.loads(latest.output)["report_date"] == "2024-01-31"
    listed = runner.invoke(root, ["reports", "list"])
    assert "2024-01-31" in listed.output and "transactions=1" in listed.output
