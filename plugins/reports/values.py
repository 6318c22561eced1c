"""Plain values in a report: the JSON-safety check, and figures as text for CSV and summaries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def ensure_json_safe(value: Any) -> None:
    """Raise ValueError unless `value` is plain JSON (no Decimal, datetime, NaN, objects)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "sections must be JSON-safe (str, int, float, bool, None, lists, dicts; "
            f"Decimal and dates as strings): {exc}"
        ) from None


def cell(value: Any) -> str:
    """A scalar as text: None → "", bools → true/false, lists → JSON, others → str()."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Nested dicts → `("by_kind.deposit.count", "3")` pairs, in order."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{path}.")
        elif isinstance(value, dict):
            yield path, ""
        else:
            yield path, cell(value)
