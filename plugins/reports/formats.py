"""Report formats: the built-in json, csv and html, and collecting every registered one.

The built-ins are registered through `register_report_formats`, the same hook a
third-party package implements.
"""

from __future__ import annotations

import csv
import io
import json
import re
from html import escape
from typing import Any

from core import hookimpl
from core.errors import ConfigError
from core.plugins import PluginSet
from plugins.reports.report import DailyReport, ReportFormat, cell, flatten
from plugins.reports.settings import FORMAT_NAME

EXTENSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class JsonFormat:
    """The whole report as one JSON document (report_date, generated_at, sections)."""

    name = "json"
    extension = "json"
    media_type = "application/json"

    def render(self, report: DailyReport) -> bytes:
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


@hookimpl
def register_report_formats() -> list[ReportFormat]:
    """The built-in formats: json, csv and html."""
    return [JsonFormat(), CsvFormat(), HtmlFormat()]


def _check_format(plugin: str, fmt: Any) -> None:
    """Reports' own rules: the ReportFormat shape, a plain lower-case name and extension."""
    if not isinstance(fmt, ReportFormat):
        raise ConfigError(
            f"plugin {plugin!r}: register_report_formats() returned {fmt!r:.80}; "
            "a format needs name, extension, media_type and render(report) -> bytes"
        )
    if not FORMAT_NAME.match(fmt.name):
        raise ConfigError(
            f"plugin {plugin!r}: report format name {fmt.name!r} is not valid; use "
            "lowercase letters, digits, '_' or '-'"
        )
    if not isinstance(fmt.extension, str) or not EXTENSION.match(fmt.extension):
        raise ConfigError(
            f"plugin {plugin!r}: report format {fmt.name!r} has extension "
            f"{fmt.extension!r}; use letters and digits without a leading dot"
        )


def collect_formats(plugins: PluginSet) -> dict[str, ReportFormat]:
    """Every registered format by name, in registration order; ConfigError if one is broken."""
    formats: dict[str, ReportFormat] = plugins.collect_named(
        "register_report_formats", "report format", methods=("render",), check=_check_format
    )
    return formats
