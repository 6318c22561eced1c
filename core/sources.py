"""The users, accounts and transactions banktasks reads: its own tables, or a bank's.

`DataTables` gives plugins three selectables with the columns and types of the
core tables (`core.models`): `transactions.c.amount_minor` is integer cents
(`Money`), `transactions.c.created_at` epoch microseconds (`UTCDateTime`), and so
on. Without `DATA_MAPPING` they are the core tables themselves. With it, each is a
subquery over the bank's table that renames its columns and converts amounts,
times and values in SQL, so a plugin's set-based queries run unchanged on either
and the database still plans them (SQLite and PostgreSQL flatten the subquery:
an index on the converted expression serves the time windows).

`check_mapping` compares a mapping with the database: a missing table or column,
or a column whose type cannot hold money exactly, is one `ConfigError` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Integer,
    Numeric,
    String,
    case,
    cast,
    extract,
    func,
    inspect,
    literal,
    literal_column,
    null,
    select,
    true,
    type_coerce,
)
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement, FromClause
from sqlalchemy.types import Date, DateTime

from core.errors import ConfigError
from core.mapping import FIELDS, DataMapping
from core.models import (
    Account,
    Transaction,
    TransactionChannel,
    TransactionKind,
    TransactionStatus,
    User,
)

_TARGET_VALUES: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("transactions", "kind"): tuple(TransactionKind),
    ("transactions", "status"): tuple(TransactionStatus),
    ("transactions", "channel"): tuple(TransactionChannel),
    ("accounts", "status"): None,  # free text in the core model
}
_MONEY_FIELDS = {("accounts", "balance"), ("transactions", "amount")}
_TIME_FIELDS = {
    ("users", "created_at"),
    ("accounts", "created_at"),
    ("transactions", "created_at"),
    ("transactions", "updated_at"),
}
_DEFAULTS: dict[tuple[str, str], Any] = {
    ("users", "is_active"): true(),
    ("users", "created_at"): null(),
    ("accounts", "created_at"): null(),
    ("accounts", "currency"): literal("USD"),
    ("accounts", "status"): literal("active"),
    ("accounts", "balance"): literal(0),
    ("transactions", "currency"): literal("USD"),
    ("transactions", "status"): literal(TransactionStatus.completed.value),
    ("transactions", "channel"): null(),
    ("transactions", "counterparty"): null(),
    ("transactions", "description"): null(),
}
_MODELS = {"users": User, "accounts": Account, "transactions": Transaction}


@dataclass(frozen=True)
class DataTables:
    """The three tables banktasks reads, as selectables with the core tables' columns.

    `users`, `accounts`, `transactions` are for Core queries (`t.c.amount_minor`);
    `User`, `Account`, `Transaction` are ORM entities over the same rows
    (`select(tables.Transaction.amount)`). `mapped` says whether they are a bank's
    tables (read-only: banktasks never writes them) or banktasks' own.
    """

    users: FromClause
    accounts: FromClause
    transactions: FromClause
    User: Any
    Account: Any
    Transaction: Any
    mapped: bool = False


def native_tables() -> DataTables:
    """banktasks' own tables (`core.models`)."""
    return DataTables(
        User.__table__, Account.__table__, Transaction.__table__, User, Account, Transaction
    )


def _micros(expr: Any, dialect: str, naive: bool = False) -> ColumnElement[Any]:
    """A timestamp column as integer epoch microseconds, exactly, in SQL.

    Constants are written inline, not bound, so the expression is the same text in
    every query: an index on it (docs/existing-database.md) serves the time windows.
    """
    million: ColumnElement[Any] = literal_column("1000000")
    if dialect == "postgresql":
        # `AT TIME ZONE 'UTC'` turns a timestamptz into UTC wall time: the same instant,
        # and (unlike EXTRACT on a timestamptz) an immutable expression that can be indexed
        utc = expr if naive else expr.op("AT TIME ZONE")(literal_column("'UTC'"))
        return cast(func.round(extract("epoch", utc) * million), BigInteger)
    # SQLite keeps timestamps as UTC ISO text ("2024-01-31 09:30:00.123456"): whole seconds
    # from strftime of the first 19 characters (strftime itself would round .9995 s up to
    # the next second), the microseconds from the text itself.
    whole = func.substr(expr, literal_column("1"), literal_column("19"))
    seconds = cast(func.strftime(literal_column("'%s'"), whole), BigInteger)
    padded = expr.op("||")(literal_column("'000000'"))
    fraction = cast(func.substr(padded, literal_column("21"), literal_column("6")), Integer)
    return seconds * million + fraction


def _translated(expr: Any, values: dict[str, str]) -> Any:
    """`CASE expr WHEN stored THEN banktasks' value … ELSE expr END`, values written inline
    (like the time expressions: the same text in every query, so it can be indexed)."""
    if not values:
        return expr
    inline = {
        literal(stored, literal_execute=True): literal(value, literal_execute=True)
        for stored, value in values.items()
    }
    return case(inline, value=expr, else_=expr)


def _field(mapping: DataMapping, model: str, field: str, src: Any, dialect: str) -> Any:
    """The SQL expression of one field, converted to the core table's stored form."""
    name = mapping.column(model, field)
    if name == "":
        if (model, field) == ("transactions", "updated_at"):
            return _field(mapping, model, "created_at", src, dialect)
        return _DEFAULTS[(model, field)]
    if isinstance(name, list):
        parts = [func.coalesce(src.c[part], "") for part in name]
        joined: ColumnElement[Any] = parts[0]
        for part in parts[1:]:
            joined = joined.concat(" ").concat(part)
        return func.trim(joined)
    expr = src.c[name]
    if (model, field) in _MONEY_FIELDS:
        if mapping.amounts == "decimal":
            return cast(func.round(expr * literal_column("100")), BigInteger)
        return cast(expr, BigInteger)
    if (model, field) in _TIME_FIELDS:
        if mapping.times in ("datetime", "naive_utc"):
            return _micros(expr, dialect, naive=mapping.times == "naive_utc")
        return cast(expr, BigInteger)
    return _translated(expr, getattr(mapping, model).values.get(field, {}))


def _source(mapping: DataMapping, model: str) -> Any:
    """The bank's table as a lightweight table clause with the columns the mapping names."""
    names: set[str] = set()
    for field in FIELDS[model]:
        column = mapping.column(model, field)
        names.update(column if isinstance(column, list) else [column] if column else [])
    table_name = getattr(mapping, model).table
    return sql_table(table_name, *(sql_column(n) for n in sorted(names)), schema=mapping.schema_)


def mapped_tables(mapping: DataMapping, dialect: str) -> DataTables:
    """The bank's tables seen through `mapping` (`dialect`: `sqlite` or `postgresql`)."""
    views: dict[str, FromClause] = {}
    for model, cls in _MODELS.items():
        src = _source(mapping, model)
        native: Any = cls.__table__
        columns = []
        for field in FIELDS[model]:
            target = native.c[_stored_name(cls, field)]
            expr = _field(mapping, model, field, src, dialect)
            columns.append(type_coerce(expr, target.type).label(target.name))
        views[model] = select(*columns).select_from(src).subquery(native.name)
    return DataTables(
        views["users"],
        views["accounts"],
        views["transactions"],
        aliased(User, views["users"], adapt_on_names=True),
        aliased(Account, views["accounts"], adapt_on_names=True),
        aliased(Transaction, views["transactions"], adapt_on_names=True),
        mapped=True,
    )


def _stored_name(cls: Any, field: str) -> str:
    """The core table's column name of an attribute (`amount` is stored as `amount_minor`)."""
    return str(cls.__mapper__.attrs[field].columns[0].name)


def _type_problem(
    mapping: DataMapping, model: str, field: str, kind: Any, dialect: str
) -> str | None:
    """Why a column's type cannot hold the field, or None."""
    if (model, field) in _MONEY_FIELDS:
        if mapping.amounts == "minor":
            return None if isinstance(kind, Integer) else "integer minor units expected"
        if isinstance(kind, Float) or not isinstance(kind, Numeric):
            return "an exact NUMERIC/DECIMAL expected (a float cannot hold money exactly)"
        scale = getattr(kind, "scale", None)
        if scale is not None and scale > 2:
            return f"{scale} decimal places would be rounded to cents"
        return None
    if (model, field) in _TIME_FIELDS:
        if mapping.times == "epoch_micros":
            return None if isinstance(kind, Integer) else "integer epoch microseconds expected"
        if isinstance(kind, String):
            return None  # SQLite: ISO text
        if not isinstance(kind, DateTime) or _is_date(kind):
            return "a timestamp expected"
        if dialect == "postgresql" and kind.timezone != (mapping.times == "datetime"):
            return (
                'a timestamp WITHOUT time zone: set DATA_MAPPING.times = "naive_utc" '
                "(its values are UTC)"
                if mapping.times == "datetime"
                else 'a timestamp WITH time zone: set DATA_MAPPING.times = "datetime"'
            )
        return None
    if field in ("id", "user_id", "account_id"):
        return None if isinstance(kind, Integer) else "an integer expected"
    if field == "is_active":
        return None if isinstance(kind, Boolean | Integer) else "a boolean expected"
    return None


def _is_date(kind: Any) -> bool:
    return isinstance(kind, Date) and not isinstance(kind, DateTime)


def check_mapping(mapping: DataMapping, engine: Engine) -> None:
    """Compare `mapping` with the database behind `engine`; ConfigError (one line) on the
    first problem: a missing table or column, a type that cannot hold the field (money
    above all), or a translated value that banktasks does not know."""
    inspector = inspect(engine)
    where = f" in schema {mapping.schema_!r}" if mapping.schema_ else ""
    for model in FIELDS:
        table = getattr(mapping, model)
        prefix = f"DATA_MAPPING.{model}"
        for (owner, field), allowed in _TARGET_VALUES.items():
            bad = sorted(set(table.values.get(field, {}).values()) - set(allowed or ()))
            if owner == model and allowed is not None and bad:
                raise ConfigError(
                    f"{prefix}.values.{field}: {', '.join(bad)} not banktasks value(s); "
                    f"expected some of {', '.join(allowed)}"
                )
        if not inspector.has_table(table.table, schema=mapping.schema_):
            raise ConfigError(
                f"{prefix}.table: no table {table.table!r}{where} in {engine.url!r}; "
                "name an existing table (banktasks never creates the bank's tables)"
            )
        found = {c["name"]: c["type"] for c in inspector.get_columns(table.table, mapping.schema_)}
        for field in FIELDS[model]:
            column = mapping.column(model, field)
            for name in column if isinstance(column, list) else [column] if column else []:
                if name not in found:
                    raise ConfigError(
                        f"{prefix}.columns.{field}: table {table.table!r} has no column "
                        f"{name!r}; its columns: {', '.join(sorted(found))}"
                    )
                problem = _type_problem(mapping, model, field, found[name], engine.dialect.name)
                if problem:
                    raise ConfigError(
                        f"{prefix}.columns.{field}: column {table.table}.{name} is "
                        f"{found[name]}: {problem}"
                    )


_INDEXES = (
    ("transactions", ("account_id", "created_at")),  # the fraud windows, per account
    ("transactions", ("created_at",)),  # reports, the scan of a window
    ("transactions", ("status", "created_at")),  # the health check's old pending ones
    ("accounts", ("user_id",)),  # exports: a user's accounts
)


def recommended_indexes(mapping: DataMapping, dialect: str) -> list[str]:
    """The CREATE INDEX statements that serve banktasks' queries on the bank's tables.

    Times are indexed as the expression banktasks compares (epoch microseconds), the
    same text it sends, so the database uses the index through the mapping.
    """
    statements = []
    for model, fields in _INDEXES:
        source: Any = _source(mapping, model)
        bare = sql_table(source.name, *(sql_column(c.name) for c in source.c))  # no schema
        parts = []
        for field in fields:
            expr = _field(mapping, model, field, bare, dialect)
            if expr is bare.c.get(str(mapping.column(model, field))):
                parts.append(str(mapping.column(model, field)))
                continue
            sql = expr.compile(dialect=_dialect(dialect), compile_kwargs={"literal_binds": True})
            parts.append(f"({str(sql).replace(f'{source.name}.', '')})")
        name = f"banktasks_{source.name}_{'_'.join(fields)}"[:63]
        where = f"{mapping.schema_}." if mapping.schema_ else ""
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {name} ON {where}{source.name} ({', '.join(parts)});"
        )
    return statements


def _dialect(name: str) -> Any:
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect()
