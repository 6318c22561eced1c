"""export: stream a user's transactions into a CSV/JSONL (or plugin-provided) file.

Public surface for other plugins: `ExportFormat` (protocol of a format),
`ExportRecord` (the row passed to `on_export_ready`), and the hookspecs in
`plugins.export.hookspecs`: `register_export_formats()`, `on_export_ready(export)`.
"""

from __future__ import annotations

from typing import Any

from core import hookimpl
from plugins.export import hookspecs
from plugins.export.csvlines import neutralise_formula
from plugins.export.formats import BUILTIN_FORMATS, CsvFormat, ExportFormat, JsonlFormat
from plugins.export.models import ExportRecord
from plugins.export.rows import COLUMNS
from plugins.export.settings import ExportSettings
from plugins.export.tasks import available_formats, export_transaction_data


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add `register_export_formats` and `on_export_ready`."""
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_settings() -> tuple[str, type[ExportSettings]]:
    """EXPORT_DIR, EXPORT_MAX_DAYS."""
    return ("export", ExportSettings)


@hookimpl
def register_tasks() -> list[Any]:
    """The export task (queue "export", no schedule)."""
    return [export_transaction_data]


@hookimpl
def register_export_formats() -> list[ExportFormat]:
    """The built-in formats, registered like any third-party one: csv and jsonl."""
    return list(BUILTIN_FORMATS)


__all__ = [
    "COLUMNS",
    "CsvFormat",
    "ExportFormat",
    "ExportRecord",
    "ExportSettings",
    "JsonlFormat",
    "available_formats",
    "export_transaction_data",
    "hookspecs",
    "neutralise_formula",
]
