"""Settings of the export plugin: EXPORT_DIR, EXPORT_MAX_DAYS, EXPORT_SUBMIT_LIMIT_PER_MINUTE."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from core import PluginSettings


class ExportSettings(PluginSettings):
    """`EXPORT_DIR` (default `<var>/exports`) and `EXPORT_MAX_DAYS` (default 366)."""

    dir: Path | None = Field(
        None, description="Folder the export files are written to; default <var_dir>/exports"
    )
    max_days: int = Field(366, gt=0, description="Longest date range one export may cover")
    submit_limit_per_minute: int = Field(
        10, ge=0, description="Exports one user may request per minute, across all callers; 0: off"
    )

    @field_validator("dir")
    @classmethod
    def _not_a_file(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a directory; give a directory path")
        return value
