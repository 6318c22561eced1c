"""The built-in export formats `csv` and `jsonl` (shape: `plugins.export.api.ExportFormat`).

A format writes a header-described stream of row tuples to a binary file object,
row by row: it must not collect the rows into a list (exports are unbounded).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from itertools import islice
from typing import Any, BinaryIO

from plugins.export.api import ExportFormat
from plugins.export.csvlines import FORMULA_TRIGGERS, CsvLines
from plugins.export.rows import COLUMNS, ExportRows

FLUSH_EVERY = 1000  # rows encoded per write to the file


def _safe_row(row: tuple[Any, ...]) -> list[Any]:
    """`neutralise_formula` applied to every text cell of a row (inlined: it runs per cell)."""
    return [
        "'" + cell if cell.__class__ is str and cell.startswith(FORMULA_TRIGGERS) else cell
        for cell in row
    ]


class _TextChunks:
    """A text sink for csv.writer that is flushed to the binary file in UTF-8 chunks."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        """Keep `text` until the next `drain()`."""
        self.parts.append(text)
        return len(text)

    def drain(self) -> None:
        """Write what was kept to the file as UTF-8, in one write."""
        if self.parts:
            self.out.write("".join(self.parts).encode("utf-8"))
            self.parts.clear()


class CsvFormat:
    """RFC 4180 CSV in UTF-8 (no BOM), CRLF line ends, a header row, formula-safe cells.

    Fields with commas, quotes or line breaks are quoted (quotes doubled); text
    cells are neutralised with `neutralise_formula`; None is an empty cell.

    Any rows go through `csv.writer`; the export task's own rows (an unread
    `ExportRows` with the built-in COLUMNS) take a fast path with the same output:
    raw rows from the DB-API cursor formatted by `CsvLines`.
    """

    name = "csv"
    extension = "csv"
    media_type = "text/csv"

    def write(self, columns: list[str], rows: Iterable[tuple[Any, ...]], out: BinaryIO) -> None:
        """Stream the header and rows to `out`."""
        sink = _TextChunks(out)
        writer = csv.writer(sink, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(_safe_row(tuple(columns)))
        if isinstance(rows, ExportRows) and rows.fresh and list(columns) == COLUMNS:
            sink.drain()
            _write_export_rows(rows, out)
            return
        iterator = iter(rows)
        while batch := list(islice(iterator, FLUSH_EVERY)):
            writer.writerows(map(_safe_row, batch))
            sink.drain()
        sink.drain()


def _write_export_rows(rows: ExportRows, out: BinaryIO) -> None:
    """The fast path: batches of raw rows → CSV lines → one UTF-8 write per batch."""
    lines = CsvLines()
    for batch in rows.raw_batches():
        out.write(lines.lines(batch).encode("utf-8"))


class JsonlFormat:
    """JSON Lines: one JSON object per row (keys are the column names), UTF-8, `\\n` ends."""

    name = "jsonl"
    extension = "jsonl"
    media_type = "application/x-ndjson"

    def write(self, columns: list[str], rows: Iterable[tuple[Any, ...]], out: BinaryIO) -> None:
        """Stream one object per row to `out`."""
        encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        parts: list[str] = []
        for row in rows:
            parts.append(encode(dict(zip(columns, row, strict=True))))
            if len(parts) == FLUSH_EVERY:
                out.write(("\n".join(parts) + "\n").encode("utf-8"))
                parts.clear()
        if parts:
            out.write(("\n".join(parts) + "\n").encode("utf-8"))


BUILTIN_FORMATS: list[ExportFormat] = [CsvFormat(), JsonlFormat()]
