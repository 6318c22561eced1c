"""`banktasks health [--json]`: run the checks in this process; exit 0 ok, 1 degraded, 2 down."""

from __future__ import annotations

import json
from typing import Any

import click
from pydantic_core import to_jsonable_python

from core import current_app
from plugins.health.runner import run_checks

EXIT_CODES = {"ok": 0, "degraded": 1, "down": 2}


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def render_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table followed by the overall status."""
    header = ("CHECK", "STATUS", "VALUE", "THRESHOLD", "MS", "DETAIL")
    rows = [
        (
            name,
            c["status"],
            _cell(c["value"]),
            _cell(c["threshold"]),
            _cell(c["duration_ms"]),
            c["detail"],
        )
        for name, c in report["checks"].items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True))
        + "  "
        + row[5]
        for row in [header, *rows]
    ]
    lines.append(f"overall: {report['status']} (checked at {report['checked_at']})")
    return "\n".join(lines)


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def health_command(as_json: bool) -> None:
    """Run the health checks now, in this process (not through the queue).

    Exit status: 0 ok, 1 degraded, 2 down — usable as a liveness/readiness probe.
    """
    report = run_checks(current_app())
    if as_json:
        click.echo(json.dumps(to_jsonable_python(report), indent=2))
    else:
        click.echo(render_table(report))
    click.get_current_context().exit(EXIT_CODES[report["status"]])
