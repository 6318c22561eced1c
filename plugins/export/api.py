"""The shape other packages write against: `ExportFormat`, one streaming file format.

A plugin returns objects of this shape from `register_export_formats()`. The
row an `on_export_ready` listener receives is `plugins.export.ExportRecord`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, BinaryIO, Protocol, runtime_checkable


@runtime_checkable
class ExportFormat(Protocol):
    """What `register_export_formats()` returns: one streaming file format.

    `name` is what `export_format=` selects (lower-case letters, digits, `_`,
    `-`, e.g. "csv"), `extension` the file suffix without the dot, `media_type`
    the MIME type. `write` consumes `rows` lazily: exports are unbounded.
    """

    name: str
    extension: str
    media_type: str

    def write(self, columns: list[str], rows: Iterable[tuple[Any, ...]], out: BinaryIO) -> None:
        """Write `columns` and then each row of `rows` (consumed lazily) to `out`."""
        ...
