"""Built-in formats (json, csv, html), escaping, and formats other plugins register."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import plugins.reports
from banktasks_testing import fake_plugin
from core import ConfigError, TaskArgumentError, hookimpl
from plugins.reports import (
    CsvFormat,
    DailyReport,
    HtmlFormat,
    JsonFormat,
    ReportFormat,
    generate_daily_reports,
)

from .helpers import DAY, add_account, add_tx, at, reports_dir

EVIL = "<script>alert('x')</script>"


class EvilSection:
    """A neighbour whose section carries hostile text (as counterparties might)."""

    banktasks_name = "evil"

    @hookimpl
    def register_report_sections(self, report_date: date) -> tuple[str, dict[str, Any]]:
        return (f"notes {EVIL}", {EVIL: f"{EVIL} & co", "formula": '=HYPERLINK("x")'})


def _fill(in_session: Any) -> None:
    def fill(session: Any) -> None:
        account = add_account(session)
        add_tx(session, account, "100.00", at(DAY, 1), kind="deposit", counterparty=EVIL)
        add_tx(session, account, "0.30", at(DAY, 2), status="failed", description=EVIL)

    in_session(fill)


def test_json_parses_back_to_the_report(reports_app: Any, in_session: Any) -> None:
    _fill(in_session)
    result = generate_daily_reports(report_date=DAY, formats=["json"])
    data = json.loads(Path(result["files"]["json"]).read_text("utf-8"))
    again = DailyReport.model_validate(data)
    assert again.report_date == DAY
    assert again.generated_at.isoformat() == result["generated_at"]
    assert again.sections["transactions"]["by_currency"] == {"USD": {"count": 2, "sum": "100.30"}}
    assert again.totals == result["totals"]


def test_csv_parses_with_the_csv_module(reports_app: Any, in_session: Any) -> None:
    _fill(in_session)
    result = generate_daily_reports(report_date=DAY, formats=["csv"])
    with open(result["files"]["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["section", "metric", "value"]
    assert all(len(r) == 3 for r in rows)
    table = {(s, m): v for s, m, v in rows[1:]}
    assert table[("report", "report_date")] == "2024-01-31"
    assert table[("transactions", "count")] == "2"
    assert table[("transactions", "by_currency.USD.sum")] == "100.30"
    assert table[("transactions", "by_kind.deposit.sums.USD")] == "100.00"
    assert table[("transactions", "by_status.failed.count")] == "1"
    assert table[("transactions", "failed")] == "1"
    assert table[("customers", "new_users")] == "0"


def test_html_escapes_everything_it_shows(make_app: Any, in_session: Any) -> None:
    make_app("reports", EvilSection())
    result = generate_daily_reports(report_date=DAY, formats=["html", "csv"])
    page = Path(result["files"]["html"]).read_text("utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "<h2>notes &lt;script&gt;" in page
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Daily report 2024-01-31</title>" in page
    with open(result["files"]["csv"], newline="", encoding="utf-8") as fh:
        table = {(s, m): v for s, m, v in list(csv.reader(fh))[1:]}
    # Spreadsheet formulas are neutralised; the text itself is kept.
    assert table[(f"notes {EVIL}", "formula")] == '\'=HYPERLINK("x")'


def test_formats_render_a_report_directly() -> None:
    report = DailyReport(
        report_date=date(2024, 2, 29),
        generated_at=datetime(2024, 3, 1, 0, 0, 1, tzinfo=UTC),
        sections={"custom": {"n": 1, "nested": {"a": [1, 2]}, "none": None, "flag": True}},
    )
    for fmt in (JsonFormat(), CsvFormat(), HtmlFormat()):
        assert isinstance(fmt, ReportFormat)
        assert isinstance(fmt.render(report), bytes)
    text = CsvFormat().render(report).decode()
    assert 'custom,nested.a,"[1,2]"\r\n' in text
    assert "custom,none,\r\n" in text
    assert "custom,flag,true\r\n" in text


class Markdown:
    """A third-party format, as in the README."""

    name = "md"
    extension = "md"
    media_type = "text/markdown"

    def render(self, report: DailyReport) -> bytes:
        totals = report.totals
        lines = [f"# Daily report {report.report_date}", ""]
        lines += [f"- {cur}: {total}" for cur, total in totals["sums"].items()]
        return ("\n".join(lines) + "\n").encode()


class MarkdownPlugin:
    banktasks_name = "acme_markdown"

    @hookimpl
    def register_report_formats(self) -> list[Any]:
        return [Markdown()]


class Broken:
    name = "broken"
    extension = "txt"
    media_type = "text/plain"

    def render(self, report: DailyReport) -> bytes:
        raise RuntimeError("renderer exploded")


class BrokenPlugin:
    banktasks_name = "acme_broken"

    @hookimpl
    def register_report_formats(self) -> list[Any]:
        return [Broken()]


def test_a_third_party_format_is_written_like_the_built_ins(make_app: Any, in_session: Any) -> None:
    make_app("reports", MarkdownPlugin())
    _fill(in_session)
    result = generate_daily_reports(report_date=DAY)
    assert list(result["files"]) == ["json", "csv", "html", "md"]
    assert Path(result["files"]["md"]).read_text() == "# Daily report 2024-01-31\n\n- USD: 100.30\n"
    with pytest.raises(TaskArgumentError, match="available formats: csv, html, json, md"):
        generate_daily_reports(report_date=DAY, formats=["pdf"])


def test_a_format_that_fails_does_not_stop_the_others(make_app: Any) -> None:
    app = make_app("reports", BrokenPlugin())
    result = generate_daily_reports(report_date=DAY)
    assert list(result["files"]) == ["json", "csv", "html"]
    assert result["errors"]["formats"] == {"broken": "RuntimeError: renderer exploded"}
    assert not list(reports_dir(app).glob("*.txt"))
    with pytest.raises(plugins.reports.ReportError, match="renderer exploded"):
        generate_daily_reports(report_date=DAY, formats=["broken"])


def test_a_format_name_registered_twice_stops_start_up(make_app: Any) -> None:
    class Twice:
        banktasks_name = "acme_json"

        @hookimpl
        def register_report_formats(self) -> list[Any]:
            return [JsonFormat()]

    with pytest.raises(ConfigError, match="report format 'json' is registered twice"):
        make_app("reports", Twice())


def test_a_format_without_render_stops_start_up(make_app: Any) -> None:
    class NotAFormat:
        name = "x"
        extension = "x"

    class Bad:
        banktasks_name = "acme_bad"

        @hookimpl
        def register_report_formats(self) -> list[Any]:
            return [NotAFormat()]

    with pytest.raises(ConfigError, match="plugin 'acme_bad': register_report_formats"):
        make_app("reports", Bad())


@pytest.mark.parametrize(
    ("name", "extension", "message"),
    [
        (
            "Markdown",
            "md",
            "plugin 'acme_odd': report format 'Markdown' needs a name of lower-case",
        ),
        ("md/x", "md", "plugin 'acme_odd': report format 'md/x' needs a name of lower-case"),
        ("md", ".md", "plugin 'acme_odd': report format 'md' has extension '.md'; expected"),
        ("md", "../md", "plugin 'acme_odd': report format 'md' has extension '../md'; expected"),
    ],
)
def test_a_format_with_a_bad_name_or_extension_stops_start_up(
    make_app: Any, name: str, extension: str, message: str
) -> None:
    odd = Markdown()
    odd.name, odd.extension = name, extension
    plugin = fake_plugin("acme_odd", register_report_formats=lambda: [odd])
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_app("reports", plugin)


def test_daily_report_model_rules() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        DailyReport(report_date=DAY, generated_at=datetime(2024, 2, 1), sections={})
    from decimal import Decimal

    with pytest.raises(ValueError, match="JSON-safe"):
        DailyReport(
            report_date=DAY,
            generated_at=datetime(2024, 2, 1, tzinfo=UTC),
            sections={"x": {"amount": Decimal("1.00")}},
        )


def test_summary_text(reports_app: Any, in_session: Any) -> None:
    _fill(in_session)
    generate_daily_reports(report_date=DAY)
    from plugins.reports.storage import load_report

    with reports_app.runtime.db.session() as session:
        report = load_report(session, DAY)
    assert report is not None
    text = report.summary_text()
    assert text.startswith("Daily report for 2024-01-31 (UTC day)\n")
    assert "Transactions: 2\n" in text
    assert "  USD: 2 transactions, total 100.30\n" in text
    assert "Pending: 0, failed: 1\n" in text
    assert "  deposit: 1 (USD 100.00)\n" in text
    assert "New users: 0, new accounts: 0\n" in text
    assert f"json: {reports_dir(reports_app).resolve()}/daily-report-2024-01-31.json" in text
    html = report.summary_html()
    assert html.startswith("<pre>") and "Transactions: 2" in html
