"""Database access: engine, session scope, and exact column types for money and time.

Money is stored as integer minor units (cents) behind a `Decimal` attribute, so
SQL `sum()` is exact on SQLite (which would otherwise turn NUMERIC into REAL)
and PostgreSQL alike. Times are stored as integer microseconds since the Unix
epoch behind a timezone-aware UTC `datetime`: exact, portable window arithmetic
and small, fast indexes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

CENT = Decimal("0.01")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every table, core and plugins alike (one shared metadata)."""


def to_minor(amount: Decimal | int | str) -> int:
    """Decimal amount → integer cents; refuses fractions of a cent instead of rounding."""
    value = Decimal(amount)
    cents = value * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"amount {amount} has more than two decimal places")
    return int(cents)


def from_minor(cents: int | Decimal) -> Decimal:
    """Integer cents (or an exact SQL sum of them) → Decimal with two places."""
    return (Decimal(cents) / 100).quantize(CENT)


def to_micros(moment: datetime) -> int:
    """Aware datetime → integer microseconds since the epoch (naive ones are refused)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware UTC datetime")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Integer microseconds since the epoch → aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(micros))


class Money(TypeDecorator[Decimal]):
    """`Decimal` in Python, exact integer cents (BIGINT) in the database."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        return None if value is None else to_minor(value)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else from_minor(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC `datetime` in Python, integer epoch microseconds (BIGINT) in the database."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        return None if value is None else to_micros(value)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return None if value is None else from_micros(value)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def dialect_insert(dialect: str) -> Any:
    """The `insert()` of a dialect that has `on_conflict_do_nothing`/`_do_update`.

    PostgreSQL's for "postgresql", SQLite's otherwise; only that dialect is imported
    (the PostgreSQL one costs ~30 ms of start-up that a SQLite worker need not pay).
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path | str) -> Path:
    """Make folder `path` and any missing parent owner-only (0700), whatever the umask.

    Folders that already exist are left as they are (see `make_private`).
    """
    folder = Path(path)
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for item in reversed(missing):
        try:
            os.mkdir(item, 0o700)
        except FileExistsError:  # another process made it first
            continue
        os.chmod(item, 0o700)  # mkdir's mode went through the umask
    return Path(path)


def make_private(path: Path | str) -> bool:
    """Take the group and other bits off an existing file or folder this user owns
    (0644 → 0600, 0755 → 0700); True if it changed. Symbolic links and paths owned by
    another user are left alone."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid() or not mode & 0o077:
        return False
    os.chmod(path, mode & 0o700)
    return True


def private_sqlite_file(path: Path | str) -> None:
    """Prepare a SQLite database file before SQLite opens it: its missing folders 0700, the
    file itself created 0600 (SQLite gives its -wal, -shm and -journal files the database
    file's mode), and an existing file or side file from an older version made 0600."""
    database = Path(path)
    private_dir(database.parent)
    with suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for item in (database, *(Path(f"{database}{suffix}") for suffix in SQLITE_SIDE_FILES)):
        make_private(item)


def _sqlite_file(database: str | None) -> str | None:
    """The file of a SQLite URL's database, or None (in memory, or a `file:` URI)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_read_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def make_engine(url: str, read_only: bool = False, **kwargs: Any) -> Engine:
    """Create an engine: SQLite gets WAL, foreign keys and a busy timeout; its file and
    the folders made for it are owner-only (`private_sqlite_file`).

    `read_only` (a bank's database, DATA_MAPPING) leaves a SQLite file exactly as it is:
    no change of mode or journal, and the connection refuses writes (`query_only`).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and read_only:
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_read_pragmas)
        return engine
    if parsed.get_backend_name() == "sqlite":
        if database := _sqlite_file(parsed.database):
            private_sqlite_file(database)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _read_only(engine: Engine) -> None:
    """Every transaction of a PostgreSQL engine is read-only: the server refuses a write."""

    @event.listens_for(engine, "connect")
    def _session_read_only(dbapi_conn: Any, _record: Any) -> None:
        # every transaction of the session, server-side cursors' included
        cursor = dbapi_conn.cursor()
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cursor.close()
        dbapi_conn.commit()


class Database:
    """An engine and a session factory for one database URL (created lazily).

    `schema` (PostgreSQL) puts every table of the shared metadata in that schema
    (SQLAlchemy's schema translation; tables named with a schema of their own keep it).
    `skip_tables` are left out of `create_all` (core tables a mapping replaces);
    `read_only` makes the database refuse writes (a bank's mapped tables).
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        skip_tables: tuple[str, ...] = (),
        read_only: bool = False,
    ) -> None:
        self.url = url
        self.schema = schema
        self.skip_tables = skip_tables
        self.read_only = read_only
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created on first use."""
        if self._engine is None:
            options = {"schema_translate_map": {None: self.schema}} if self.schema else {}
            engine = make_engine(self.url, read_only=self.read_only, execution_options=options)
            if self.read_only and engine.dialect.name == "postgresql":
                _read_only(engine)
            self._engine = engine
            self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return make_url(self.url).get_backend_name()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises."""
        self.engine  # noqa: B018 - creates the session factory
        assert self._sessions is not None
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def create_all(self) -> list[str]:
        """Create every table of the shared metadata but `skip_tables` (and the schema, if
        one is set); return their names."""
        tables = [t for t in Base.metadata.sorted_tables if t.name not in self.skip_tables]
        with self.engine.begin() as conn:
            if self.schema:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            Base.metadata.create_all(conn, tables=tables)
        return sorted(t.name for t in tables)

    def dispose(self) -> None:
        """Close pooled connections (call after fork, or when done)."""
        if self._engine is not None:
            self._engine.dispose()
