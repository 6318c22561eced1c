"""Report formats: the built-in json, csv and html, and collecting every registered one.

The built-ins are registered by `plugins.reports.plugin.register_report_formats`,
the same hook a third-party package implements.
"""

from __future__ import annotations

import csv
import io
import json
import re
from html import escape
from typing import Any

from core import ConfigError, PluginSet
from core.validators import check_format
from plugins.reports.api import DailyReport, ReportFormat
from plugins.reports.values import cell, flatten

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class JsonFormat:
    """The whole report as one JSON document (report_date, generated_at, sections)."""

    name = "json"
    extension = "json"
    media_type = "application/json"

    def render(self, report: DailyReport) -> bytes:
        """The report (without its file list) as indented UTF-8 JSON."""
        data = report.model_dump(mode="json", exclude={"files"})
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def neutralise(text: str) -> str:
    """Defuse spreadsheet formulas (OWASP CSV injection): prefix a quote, keep numbers."""
    if text.startswith(FORMULA_START) and not NUMBER.match(text):
        return "'" + text
    return text


class CsvFormat:
    """One row per figure: `section,metric,value` (nested keys joined with dots)."""

    name = "csv"
    extension = "csv"
    media_type = "text/csv"

    def render(self, report: DailyReport) -> bytes:
        """A header row, the report's date and time, then one row per figure (CRLF)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["section", "metric", "value"])
        writer.writerow(["report", "report_date", report.report_date.isoformat()])
        writer.writerow(["report", "generated_at", report.generated_at.isoformat()])
        for section, data in report.sections.items():
            for metric, value in flatten(data):
                writer.writerow([neutralise(section), neutralise(metric), neutralise(value)])
        return out.getvalue().encode("utf-8")


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:.3em 0}"
    "th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4;font-weight:600}.error{color:#b00}"
)


def _inline(value: Any) -> str:
    """A small dict of scalars on one line (`USD 10.10; EUR 3.00`), escaped."""
    if isinstance(value, dict):
        if not value:
            return "&mdash;"
        return "; ".join(f"{escape(str(k))} {_inline(v)}" for k, v in value.items())
    return escape(cell(value))


def _is_grid(value: dict[str, Any]) -> bool:
    """True for a dict of dicts that share their keys (render as one table with columns)."""
    inner = list(value.values())
    if not inner or not all(isinstance(v, dict) and v for v in inner):
        return False
    first = list(inner[0])
    return all(list(v) == first for v in inner) and not any(
        isinstance(x, dict) and any(isinstance(y, dict) for y in x.values())
        for v in inner
        for x in v.values()
    )


def _html_value(value: Any) -> str:
    """A section value as escaped HTML: text, a grid table, or nested key/value tables."""
    if not isinstance(value, dict):
        return escape(cell(value))
    if not value:
        return "&mdash;"
    if _is_grid(value):
        columns = list(next(iter(value.values())))
        head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
        body = "".join(
            f"<tr><th>{escape(str(key))}</th>"
            + "".join(f"<td>{_inline(row[c])}</td>" for c in columns)
            + "</tr>"
            for key, row in value.items()
        )
        return f"<table><tr><th></th>{head}</tr>{body}</table>"
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{_html_value(v)}</td></tr>" for k, v in value.items()
    )
    return f"<table>{rows}</table>"


class HtmlFormat:
    """A standalone HTML page: one table per section; every text is HTML-escaped."""

    name = "html"
    extension = "html"
    media_type = "text/html"

    def render(self, report: DailyReport) -> bytes:
        """A standalone UTF-8 HTML page with one heading and table per section."""
        day = escape(report.report_date.isoformat())
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Daily report {day}</title><style>{STYLE}</style></head><body>",
            f"<h1>Daily report {day}</h1>",
            f"<p>UTC day {day}; generated at {escape(report.generated_at.isoformat())}</p>",
        ]
        for name, data in report.sections.items():
            css = ' class="error"' if set(data) == {"error"} else ""
            parts.append(f"<h2{css}>{escape(name)}</h2>")
            parts.append(_html_value(data))
        parts.append("</body></html>\n")
        return "\n".join(parts).encode("utf-8")


def builtin_formats() -> list[ReportFormat]:
    """The built-in formats, in this order: json, csv and html."""
    return [JsonFormat(), CsvFormat(), HtmlFormat()]


def check_report_format(plugin: str, fmt: Any) -> None:
    """The ReportFormat shape, then the shared name and extension rules (`core.validators`)."""
    if not isinstance(fmt, ReportFormat):
        raise ConfigError(
            f"plugin {plugin!r}: register_report_formats() returned {fmt!r:.80}; "
            "a format needs name, extension, media_type and render(report) -> bytes"
        )
    check_format(plugin, fmt, what="report format")


def collect_formats(plugins: PluginSet) -> dict[str, ReportFormat]:
    """Every registered format by name, in registration order; ConfigError if one is broken."""
    formats: dict[str, ReportFormat] = plugins.collect_named(
        "register_report_formats", "report format", methods=("render",), check=check_report_format
    )
    return formats
