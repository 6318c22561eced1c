"""Settings of the reports plugin: `REPORTS_DIR`, `REPORTS_FORMATS`, `REPORTS_SCHEDULE`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from core import PluginSettings
from core.settings import CommaList

FORMAT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class ReportsSettings(PluginSettings):
    """`REPORTS_DIR` (default `<var dir>/reports`) and `REPORTS_FORMATS` (default: all)."""

    dir: Path | None = Field(
        None, description="Where report files go; default <BANKTASKS_VAR_DIR>/reports"
    )
    formats: CommaList = Field(
        None, description="Formats written by default (comma list); default: every format"
    )

    @field_validator("dir", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("dir")
    @classmethod
    def _not_a_file(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a directory; give a directory path")
        return value

    @field_validator("formats")
    @classmethod
    def _format_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [name.strip().lower() for name in value if name.strip()]
        if not names:
            return None  # REPORTS_FORMATS="" means the default: every format
        bad = [name for name in names if not FORMAT_NAME.match(name)]
        if bad:
            raise ValueError(
                f"bad format name(s) {', '.join(map(repr, bad))}: "
                "expected lowercase letters, digits, '_' or '-' (e.g. json,csv,html)"
            )
        return list(dict.fromkeys(names))

    def reports_dir(self, var_dir: Path) -> Path:
        """The directory report files are written to."""
        return self.dir if self.dir is not None else var_dir / "reports"
