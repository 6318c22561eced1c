"""Settings of the reports plugin: `REPORTS_DIR`, `REPORTS_FORMATS`, `REPORTS_SCHEDULE`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from core import CommaList, PluginSettings
from core.validators import Directory, is_name


class ReportsSettings(PluginSettings):
    """`REPORTS_DIR` (default `<var dir>/reports`) and `REPORTS_FORMATS` (default: all).

    `REPORTS_SCHEDULE` (the beat entry's cron, or `off`) is a core setting every
    plugin with a schedule has.
    """

    dir: Directory = Field(
        None,
        description=(
            "Folder the report files are written to (made if missing); empty: "
            "<BANKTASKS_VAR_DIR>/reports"
        ),
    )
    formats: CommaList = Field(
        None,
        description=(
            "Formats written when the task is called without `formats` (comma list, e.g. "
            "json,csv); empty: every registered format"
        ),
    )

    @field_validator("formats")
    @classmethod
    def _format_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [name.strip().lower() for name in value if name.strip()]
        if not names:
            return None  # REPORTS_FORMATS="" means the default: every format
        bad = [name for name in names if not is_name(name)]
        if bad:
            raise ValueError(
                f"bad format name(s) {', '.join(map(repr, bad))}: "
                "expected lowercase letters, digits, '_' or '-' (e.g. json,csv,html)"
            )
        return list(dict.fromkeys(names))

    def reports_dir(self, var_dir: Path) -> Path:
        """The directory report files are written to."""
        return self.dir if self.dir is not None else var_dir / "reports"
