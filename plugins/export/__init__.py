"""export: stream a user's transactions into a CSV/JSONL (or plugin-provided) file.

Public surface (what other packages may import from `plugins.export`):

- `ExportFormat` (protocol of a format, defined in `plugins.export.api`) and the
  built-in formats `CsvFormat`, `JsonlFormat`;
- `ExportRecord` (the `export_exports` row passed to `on_export_ready`),
  `ExportSettings`, `COLUMNS` (the columns every format is given);
- the task `export_transaction_data` (`export.export_transaction_data`) and
  `available_formats()` (the registered formats of the current app, by name);
- `neutralise_formula` (the CSV formula-injection rule);
- `hookspecs`: `register_export_formats()`, `on_export_ready(export)`.

The hook implementations live in `plugins.export.plugin` (the entry point).
"""

from __future__ import annotations

from plugins.export import hookspecs
from plugins.export.api import ExportFormat
from plugins.export.csvlines import neutralise_formula
from plugins.export.formats import CsvFormat, JsonlFormat
from plugins.export.models import ExportRecord
from plugins.export.rows import COLUMNS
from plugins.export.settings import ExportSettings
from plugins.export.tasks import available_formats, export_transaction_data

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
