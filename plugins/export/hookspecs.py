"""Hooks the export plugin owns. Implement them with `core.hookimpl` in any plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import hookspec

if TYPE_CHECKING:
    from plugins.export.api import ExportFormat
    from plugins.export.models import ExportRecord


@hookspec
def register_export_formats() -> list[ExportFormat]:
    """Return export formats (objects satisfying `plugins.export.ExportFormat`).

    Each has a unique `name` (what `export_format=` selects: lower-case letters,
    digits, `_` and `-`), a file `extension`, a `media_type` and a streaming
    `write(columns, rows, out)`. The built-in `csv` and `jsonl` come through this hook.
    """
    return []


@hookspec
def on_export_ready(export: ExportRecord) -> Any:
    """Called once an export file is in place and its `ExportRecord` is committed.

    `export` is a detached row: id, user_id, format, path (str), file_name, rows,
    bytes, sha256, start_date, end_date, created_at. Tell the user with the file
    name, never the data. If the task is redelivered before this hook finished,
    it is called again for the same export: key side effects on `export.id`.
    """
