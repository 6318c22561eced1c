"""The one table of a run (Markdown, readable in a terminal), results.json and the README block."""

# ruff: noqa: RUF001

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.util import BENCH, DATA, Results

README = BENCH / "README.md"
START = "<!-- BENCH-TABLE:START -->"
END = "<!-- BENCH-TABLE:END -->"
COLUMNS = [("value", "value / SQLite"), ("postgresql", "PostgreSQL")]


def _met(row: Any) -> str:
    shown = {k: v for k, v in row.met.items() if v is not None}
    if not shown:
        return ""

    def word(value: bool) -> str:
        return "yes" if value else "**NO**"

    if set(shown) == {"value"} and not row.section.startswith("Database"):
        return word(shown["value"])
    labels = (("value", "SQLite"), ("postgresql", "PG"))
    return " / ".join(f"{label} {word(shown[k])}" for k, label in labels if k in shown)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def header(meta: dict[str, Any]) -> str:
    pg = meta.get("postgresql") or "not run"
    load = meta.get("loadavg_start", [0])[0], meta.get("loadavg_end", [0])[0]
    return (
        f"banktasks benchmarks, {meta.get('started', '?')} ({meta.get('mode')} run, "
        f"{meta.get('reps')} repetitions, {meta.get('celery_reps', meta.get('reps'))} for the "
        f"Celery figures, {meta.get('elapsed_s', '?')} s)  \n"
        f"machine: {meta.get('cpu')}, {meta.get('cpus')} CPUs, {meta.get('memory_gb')} GB RAM, "
        f"{meta.get('os')} (kernel {meta.get('kernel')}); "
        f"load average {load[0]:.2f} → {load[1]:.2f}  \n"
        f"software: Python {meta.get('python')}, Celery {meta.get('celery')}, "
        f"SQLAlchemy {meta.get('sqlalchemy')}, SQLite {meta.get('sqlite')}, "
        f"PostgreSQL {pg}, Valkey {meta.get('valkey')}  \n"
        f"data: {meta.get('dataset', '-')}  \n"
        "each figure: median [min – max] of the repetitions; each ratio: ratio of the medians "
        "[range of the same-repetition ratios]"
    )


def render_table(results: Results, meta: dict[str, Any]) -> str:
    lines = [header(meta), ""]
    lines.append("| figure | " + " | ".join(label for _, label in COLUMNS) + " | target | met |")
    lines.append("|---|" + "---|" * len(COLUMNS) + "---|---|")
    section = None
    for key in results.order:
        row = results.rows[key]
        if row.section != section:
            section = row.section
            lines.append(f"| **{_cell(section)}** |" + " |" * (len(COLUMNS) + 2))
        cells = [_cell(row.cells.get(col, "")) for col, _ in COLUMNS]
        lines.append(
            f"| {_cell(row.figure)} | "
            + " | ".join(cells)
            + f" | {_cell(row.target)} | {_met(row)} |"
        )
    for name, error in results.errors.items():
        lines.append(f"| **error in section {name}** | {_cell(error)[:300]} | | | |")
    if results.notes:
        lines.append("")
        lines.extend(f"- {note}" for note in results.notes)
    return "\n".join(lines)


def write_outputs(results: Results, meta: dict[str, Any], table: str, partial: bool) -> Path:
    """results.json (+ README block) for a full run; bench/.data/results-partial.json otherwise."""
    target = DATA / "results-partial.json" if partial else BENCH / "results.json"
    payload = {
        "meta": meta,
        "samples": results.samples,
        "comparisons": results.comparisons,
        "table": [
            {
                "key": row.key,
                "section": row.section,
                "figure": row.figure,
                "cells": row.cells,
                "target": row.target,
                "met": row.met,
            }
            for row in (results.rows[k] for k in results.order)
        ],
        "notes": results.notes,
        "errors": results.errors,
    }
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(target)
    if not partial:
        update_readme(table)
    return target


RESULTS = BENCH / "results"
"""One Markdown table per run and day: `<date>-<quick|full>[-partial].md`, to compare runs."""


def write_dated_table(meta: dict[str, Any], table: str, partial: bool) -> Path:
    """Write the run's table to bench/results/<date>-<mode>[-partial].md (the day's last
    run of that kind replaces an earlier one)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    day = str(meta["started"])[:10]
    target = RESULTS / f"{day}-{meta['mode']}{'-partial' if partial else ''}.md"
    target.write_text(f"# Benchmarks, {day} ({meta['mode']} run)\n\n{table}\n")
    return target


def update_readme(table: str) -> None:
    block = f"{START}\n{table}\n{END}"
    text = README.read_text() if README.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        before = text.split(START, 1)[0]
        after = text.split(END, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    README.write_text(text)
