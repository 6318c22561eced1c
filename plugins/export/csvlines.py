"""CSV cells and lines for the built-in export, byte for byte what `csv.writer` writes.

`CsvFormat` writes any rows through `csv.writer` (the generic path). For the
task's own rows it uses `CsvLines` instead: raw rows straight from the DB-API
cursor become CSV lines with one f-string each — no `datetime`, `Decimal` or
`csv.writer` work per row. The output is identical to the generic path's
(`plugins/export/tests/test_export_fast_csv.py` holds the two side by side); a row whose values
are not of the stored types (a REAL amount, a BLOB text…) or whose amount is
negative is formatted the generic way.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from plugins.export.rows import RawRow, format_row, mask_account

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
MEMO_MAX = 4096  # cells remembered per column group before the memo starts over

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MINUTE_US = 60_000_000
_HOURS_MINUTES = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECONDS = [f"{s:02d}." for s in range(60)]
_CENTS = [f".{c:02d}" for c in range(100)]


def neutralise_formula(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with `'` (OWASP CSV injection).

    Applies to every text cell whose first character is `=`, `+`, `-`, `@`, a tab
    or a carriage return — a negative amount would be prefixed too (amounts in this
    domain are positive, so none are).
    """
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def _written_by_csv(value: Any) -> str:
    """`value` as `csv.writer` writes it as one cell of a longer row (any type)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([value, None])
    return buffer.getvalue()[: -len(",\n")]


def text_cell(value: Any) -> str:
    """One cell as the generic path writes it: None empty, text neutralised and then
    quoted (quotes doubled) if it holds a comma, a quote or a line break."""
    if value is None:
        return ""
    if value.__class__ is not str:  # only exact str cells are neutralised (see _safe_row)
        return _written_by_csv(value)
    if value.startswith(FORMULA_TRIGGERS):
        value = "'" + value
    if '"' in value:
        return '"' + value.replace('"', '""') + '"'
    if "," in value or "\n" in value or "\r" in value:
        return '"' + value + '"'
    return value


def generic_line(raw: RawRow) -> str:
    """The CSV line of one raw row, cell by cell, as the generic path writes it."""
    return ",".join(map(text_cell, format_row(raw))) + "\r\n"


class CsvLines:
    """Turns batches of raw export rows into CSV text, keeping small caches between batches.

    Caches: the `YYYY-MM-DDTHH:MM:` prefix of the last minute seen (rows come in
    time order), and the finished cell of repeated values — masked account
    numbers, kind, status, currency and counterparty. Descriptions are mostly
    unique, so they are formatted every time.
    """

    def __init__(self) -> None:
        self.accounts: dict[Any, str] = {}
        self.cells: dict[Any, str] = {}
        self.minute: int | None = None
        self.prefix = ""
        self._day: int | None = None
        self._date = ""

    def lines(self, batch: list[RawRow]) -> str:
        """The CSV lines (CRLF-terminated) of `batch`, joined."""
        accounts, cells = self.accounts, self.cells
        minute, prefix = self.minute, self.prefix
        seconds, cents_text = _SECONDS, _CENTS
        out: list[str] = []
        append = out.append
        for raw in batch:
            try:
                # The id is an integer primary key (a rowid on SQLite): always an int.
                tid, created, number, kind, status, cents, currency, counterparty, note = raw
                of_row = created // _MINUTE_US
                if of_row != minute:
                    prefix = self._minute_prefix(of_row)  # raises for a non-int: cache kept
                    minute = of_row
                micros = created % _MINUTE_US
                try:
                    account = accounts[number]
                    kind_cell = cells[kind]
                    status_cell = cells[status]
                    currency_cell = cells[currency]
                    counterparty_cell = cells[counterparty]
                except KeyError:
                    self._remember(number, (kind, status, currency, counterparty))
                    account = accounts[number]
                    kind_cell = cells[kind]
                    status_cell = cells[status]
                    currency_cell = cells[currency]
                    counterparty_cell = cells[counterparty]
                note_cell = "" if note is None else text_cell(note)
                if cents < 0:  # generic: "'-1.00", neutralised like any text cell
                    append(generic_line(raw))
                    continue
                append(
                    f"{tid},{prefix}{seconds[micros // 1_000_000]}{micros % 1_000_000:06d}"
                    f"+00:00,{account},{kind_cell},{status_cell},{cents // 100}"
                    f"{cents_text[cents % 100]},{currency_cell},{counterparty_cell},{note_cell}\r\n"
                )
            except (TypeError, ValueError, OverflowError):
                # Not the stored types (a REAL, a BLOB…): the generic way, raising as it does.
                append(generic_line(raw))
        self.minute, self.prefix = minute, prefix
        return "".join(out)

    def _minute_prefix(self, minute: int) -> str:
        """`YYYY-MM-DDTHH:MM:` of an epoch minute (the date cached per day)."""
        day, of_day = divmod(minute, 1440)
        if day != self._day:
            self._date = date.fromordinal(_EPOCH_ORDINAL + day).isoformat() + "T"
            self._day = day
        return self._date + _HOURS_MINUTES[of_day]

    def _remember(self, number: Any, texts: tuple[Any, ...]) -> None:
        """Add the cells of a row's account number and repeated text values to the memo.

        Only text and None are remembered (values of other types can be equal yet
        written differently: 1 == 1.0); anything else is a TypeError, so the row goes
        the generic way.
        """
        if not all(value is None or value.__class__ is str for value in (number, *texts)):
            raise TypeError("not text")
        if len(self.accounts) >= MEMO_MAX:
            self.accounts.clear()
        if len(self.cells) >= MEMO_MAX:
            self.cells.clear()
        if number not in self.accounts:
            self.accounts[number] = text_cell(mask_account(number))
        for value in texts:
            if value not in self.cells:
                self.cells[value] = text_cell(value)
