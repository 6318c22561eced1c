"""The rows of an export, streamed from the database with constant memory.

One Core SELECT over the user's transactions in `[start, end)` (epoch micros).
Stored values are read raw — integer cents and integer microseconds — and
formatted here, which is several times faster than going through Decimal and
datetime type processing for every row.

`stream_rows` returns an `ExportRows`: iterating it runs the SELECT with
`yield_per` (a server-side cursor on PostgreSQL, `fetchmany` batches on SQLite)
and yields formatted row tuples, which is what every format's `write()` gets.
The built-in CSV format asks it for `raw_batches()` instead: lists of raw rows
straight from the DB-API cursor, without a SQLAlchemy `Row` per row.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Generator, Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Connection, String, select, type_coerce

from core import DataTables
from core.sources import native_tables

YIELD_PER = 5000
RAW_BATCH = 1000  # raw rows per DB-API fetchmany
COLUMNS = [
    "transaction_id",
    "created_at",
    "account",
    "kind",
    "status",
    "amount",
    "currency",
    "counterparty",
    "description",
]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")

RawRow = tuple[Any, ...]
"""As stored: id, created_at (epoch µs), account number, kind, status, cents, currency,
counterparty, description."""


def format_cents(cents: int) -> str:
    """Integer cents → exact decimal string: 1000001 → "10000.01", -5 → "-0.05"."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def format_micros(micros: int) -> str:
    """Epoch microseconds → ISO 8601 UTC with microseconds: "2024-01-31T23:59:59.999999+00:00"."""
    return (_EPOCH + timedelta(microseconds=micros)).isoformat(timespec="microseconds")


def mask_account(number: str | None) -> str:
    """Only the last four characters of an account number: "****1234"."""
    return "****" + (number or "")[-4:]


def format_row(raw: RawRow) -> tuple[Any, ...]:
    """A raw row → the export row (see COLUMNS): time, account and amount formatted."""
    tid, created, number, kind, status, cents, currency, counterparty, note = raw
    return (
        tid,
        format_micros(created),
        mask_account(number),
        kind,
        status,
        format_cents(cents),
        currency,
        counterparty,
        note,
    )


def export_query(user_id: int, start_us: int, end_us: int, tables: DataTables | None = None) -> Any:
    """The SELECT of a user's transactions with `start_us <= created_at < end_us`, in order.

    `tables`: where the transactions and accounts are (default banktasks' own tables).
    """
    tables = tables or native_tables()
    t = tables.transactions.c
    a = tables.accounts.c
    created = type_coerce(t.created_at, BigInteger)
    return (
        select(
            t.id,
            created,
            type_coerce(a.number, String),
            type_coerce(t.kind, String),
            type_coerce(t.status, String),
            type_coerce(t.amount_minor, BigInteger),
            t.currency,
            t.counterparty,
            t.description,
        )
        .select_from(tables.transactions.join(tables.accounts, t.account_id == a.id))
        .where(a.user_id == user_id, created >= start_us, created < end_us)
        .order_by(created, t.id)
    )


class ExportRows:
    """The rows of one export, read lazily: an iterator of export rows (see COLUMNS).

    Read it one way only, once: iterate it (formatted tuples), or call
    `raw_batches()` before iterating (raw rows, for the built-in fast paths).
    `count` is the number of rows handed out so far either way.
    """

    def __init__(
        self,
        conn: Connection,
        user_id: int,
        start_us: int,
        end_us: int,
        tables: DataTables | None = None,
    ) -> None:
        self.conn = conn
        self.query = export_query(user_id, start_us, end_us, tables)
        self.count = 0
        self._rows: Generator[tuple[Any, ...], None, None] | None = None
        self._raw: Generator[list[RawRow], None, None] | None = None

    @property
    def fresh(self) -> bool:
        """True while nothing was read yet (so `raw_batches()` may still be called)."""
        return self._rows is None and self._raw is None

    def __iter__(self) -> ExportRows:
        return self

    def __next__(self) -> tuple[Any, ...]:
        if self._rows is None:
            if self._raw is not None:
                raise RuntimeError("export rows are being read as raw batches")
            self._rows = self._formatted()
        row = next(self._rows)
        self.count += 1
        return row

    def _formatted(self) -> Generator[tuple[Any, ...], None, None]:
        result = self.conn.execution_options(yield_per=YIELD_PER).execute(self.query)
        try:
            for raw in result:
                yield format_row(raw)
        finally:
            result.close()

    def raw_batches(self, size: int = RAW_BATCH) -> Iterator[list[RawRow]]:
        """Lists of up to `size` raw rows (see RawRow), in export order, from a DB-API cursor.

        A server-side cursor on PostgreSQL, so memory stays flat there too, read
        one batch ahead by a thread.
        """
        if not self.fresh:
            raise RuntimeError("export rows were already read")
        self._raw = self._raw_batches(size)
        return self._raw

    def _raw_batches(self, size: int) -> Generator[list[RawRow], None, None]:
        cursor = _dbapi_cursor(self.conn, self.query)
        batches = _fetched(cursor, size)
        if self.conn.dialect.name == "postgresql":
            # Each FETCH is a round trip the server spends producing rows: let it
            # overlap the formatting of the previous batch. (SQLite's fetch is CPU
            # work under the GIL; a thread would gain nothing there.)
            batches = read_ahead(batches)
        try:
            for batch in batches:
                self.count += len(batch)
                yield batch
        finally:
            batches.close()
            cursor.close()

    def close(self) -> None:
        """Close the cursor of an unfinished read (a format that stopped early)."""
        for reader in (self._rows, self._raw):
            if reader is not None:
                reader.close()


def _fetched(cursor: Any, size: int) -> Generator[list[RawRow], None, None]:
    """`cursor.fetchmany(size)` lists until the cursor is exhausted."""
    while batch := cursor.fetchmany(size):
        yield batch


_DONE = object()


def read_ahead(source: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """The items of `source`, read by a background thread up to `depth` items ahead.

    An exception of `source` is raised here; closing this generator stops the
    thread (after the item it is reading) before it returns, so the caller may
    then close what `source` reads from.
    """
    slots: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                slots.put((item, None))
                if stop.is_set():
                    return
            slots.put((_DONE, None))
        except BaseException as error:
            slots.put((_DONE, error))

    thread = threading.Thread(target=produce, name="export-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # make room for a producer blocked on a full queue
            with suppress(queue.Empty):
                slots.get_nowait()
            thread.join(0.01)


def _dbapi_cursor(conn: Connection, query: Any) -> Any:
    """`query` executed on a plain DB-API cursor of `conn`'s connection (server-side on PG).

    The query's bound values are plain integers, so they need no type processing; values
    written inline at execution (`literal_execute`, a mapping's translations) are rendered.
    """
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args: Any = (
        tuple(params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else params
    )
    driver = conn.connection.driver_connection
    assert driver is not None
    if conn.dialect.name == "postgresql":
        cursor = driver.cursor(name=f"banktasks_export_{uuid.uuid4().hex[:12]}")
    else:
        cursor = driver.cursor()
    cursor.execute(compiled.string, args)
    return cursor


def stream_rows(
    conn: Connection, user_id: int, start_us: int, end_us: int, tables: DataTables | None = None
) -> ExportRows:
    """The export rows of `user_id` in `[start_us, end_us)`, read lazily (see ExportRows)."""
    return ExportRows(conn, user_id, start_us, end_us, tables)
