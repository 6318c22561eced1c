"""Settings of the export plugin: EXPORT_DIR, EXPORT_MAX_DAYS, EXPORT_SUBMIT_LIMIT_PER_MINUTE."""

from __future__ import annotations

from pydantic import Field

from core import PluginSettings
from core.validators import Directory


class ExportSettings(PluginSettings):
    """`EXPORT_DIR` (default `<var>/exports`), `EXPORT_MAX_DAYS` (default 366) and
    `EXPORT_SUBMIT_LIMIT_PER_MINUTE` (default 10)."""

    dir: Directory = Field(
        None,
        description=(
            "Folder the export files are written to (made if missing); empty: "
            "<BANKTASKS_VAR_DIR>/exports"
        ),
    )
    max_days: int = Field(
        366, gt=0, description="Longest date range one export may cover, both ends counted"
    )
    submit_limit_per_minute: int = Field(
        10, ge=0, description="Exports one user may request per minute, across all callers; 0: off"
    )
