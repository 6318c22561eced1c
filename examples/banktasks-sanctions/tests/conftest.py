"""Fixtures of the sanctions tests: a list file to load, an app with the plugin, and the
alerts fraud announces. The app fixtures come from the testing kit (`banktasks[testing]`)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from banktasks_testing import fake_plugin

from tests.helpers import LISTED


@pytest.fixture
def write_list(tmp_path: Path) -> Callable[..., Path]:
    """`write_list(rows)` writes a sanctions CSV (default: LISTED) and returns its path."""

    def write(rows: list[dict[str, str]] | None = None, name: str = "sanctions.csv") -> Path:
        path = tmp_path / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["name", "program"])
            writer.writeheader()
            writer.writerows(LISTED if rows is None else rows)
        return path

    return write


@pytest.fixture
def alerts() -> list[Any]:
    """The fraud alerts announced through `on_fraud_alert` (critical ones always are)."""
    return []


@pytest.fixture
def screening_app(
    make_app: Callable[..., Any], write_list: Callable[..., Path], alerts: list[Any]
) -> Any:
    """fraud + sanctions, the list file set, and a listener that records alerts."""
    listener = fake_plugin("alerts_seen", on_fraud_alert=lambda alert: alerts.append(alert))
    return make_app(
        "fraud",
        "sanctions",
        listener,
        plugin_settings={"sanctions": {"list_path": str(write_list())}},
    )
