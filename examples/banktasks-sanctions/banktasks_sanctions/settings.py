"""Settings of the sanctions plugin: `SANCTIONS_LIST_PATH`, `SANCTIONS_MAX_AGE_HOURS`
(and `SANCTIONS_SCHEDULE`, which every plugin gets from `core.PluginSettings`)."""

from __future__ import annotations

from pathlib import Path

from core import PluginSettings
from pydantic import Field, field_validator

PLUGIN = "sanctions"
"""The plugin's name: its entry-point name, task prefix (`sanctions.`) and settings prefix."""


class SanctionsSettings(PluginSettings):
    """Where the sanctions list comes from and how old it may get."""

    list_path: Path | None = Field(
        None,
        description=(
            "CSV file of sanctioned counterparties (a header row with a `name` column, "
            "optionally `program`); read by `sanctions.refresh_sanctions_list`"
        ),
    )
    max_age_hours: int = Field(
        26,
        ge=1,
        le=24 * 366,
        description=(
            "The `sanctions_list_fresh` health check is degraded when the list was last "
            "refreshed longer ago than this (1 to 8,784 hours)"
        ),
    )

    @field_validator("list_path")
    @classmethod
    def _a_file(cls, value: Path | None) -> Path | None:
        if value is not None and value.is_dir():
            raise ValueError("is a directory; give the path of the CSV file")
        return value
