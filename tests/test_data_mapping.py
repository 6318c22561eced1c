"""DATA_MAPPING: banktasks reads a bank's own tables (shaped like a Django app's) and gives
the same alerts, report totals and export bytes as with the same data in its own tables;
it never writes the bank's tables; a mapping that does not fit fails at start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import BigInteger, create_engine, event, func, select, text, type_coerce

from banktasks_testing.bankschema import (
    BANK_MAPPING,
    copy_from_native,
    create_bank_schema,
    table_digest,
)
from core import ConfigError, data_scope
from core.db import Database, utcnow
from core.default_plugins.seed import seed
from core.factory import check_data_mapping
from core.mapping import DataMapping
from core.sources import check_mapping
from plugins.fraud.models import FraudAlert

ROOT = Path(__file__).resolve().parents[1]


def _mapping(**changes: Any) -> dict[str, Any]:
    mapping = json.loads(json.dumps(BANK_MAPPING))
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = mapping
        for part in path:
            target = target[part]
        target[last] = value
    return mapping


def _native_data(url: str, transactions: int = 3000) -> Any:
    """banktasks' own tables with the seed's planted patterns."""
    return seed(Database(url), users=30, transactions=transactions, seed_value=7)


def _outcome(app: Any, since: datetime, until: datetime, days: list[date]) -> dict[str, Any]:
    """Everything the three plugins make of the data: alerts, reports, an export's bytes."""
    app.set_current()
    analysis = app.tasks["fraud.analyze_fraud_patterns"].apply(
        kwargs={"since": since.isoformat(), "until": until.isoformat()}
    )
    with app.runtime.db.session() as session:
        alerts = [
            (a.rule, a.account_id, a.transaction_id, a.severity, a.score, a.evidence, a.dedup_key)
            for a in session.scalars(select(FraudAlert).order_by(FraudAlert.rule, FraudAlert.id))
        ]
    reports = []
    for day in days:
        result = app.tasks["reports.generate_daily_reports"].apply(
            kwargs={"report_date": day.isoformat(), "formats": ["json"]}
        )
        report = json.loads(Path(result.get()["files"]["json"]).read_text())
        report.pop("generated_at")
        reports.append((result.get()["totals"], report))
    exports = []
    for user_id in (1, 2, 3):
        result = app.tasks["export.export_transaction_data"].apply(
            kwargs={
                "user_id": user_id,
                "start_date": since.date().isoformat(),
                "end_date": until.date().isoformat(),
                "export_format": "csv",
            }
        )
        exports.append(Path(result.get()["path"]).read_bytes())
    return {
        "scanned": analysis.get()["scanned"],
        "alerts": alerts,
        "reports": reports,
        "exports": exports,
    }


def _compare(make_app: Any, native_url: str, mapped: dict[str, Any], bank: Any) -> None:
    summary = _native_data(native_url)
    counts = copy_from_native(create_engine(native_url), bank)
    assert counts["transactions"] == summary.transactions
    before = table_digest(bank)
    since = datetime.fromisoformat(summary.since) - timedelta(days=1)
    until = utcnow()
    days = [until.date() - timedelta(days=n) for n in (1, 2, 10)]

    native = _outcome(make_app(database_url=native_url), since, until, days)
    mapped_app = make_app(**mapped)
    assert mapped_app.runtime.data.mapped
    seen = _outcome(mapped_app, since, until, days)

    assert native["alerts"], "the seed plants patterns: there must be alerts to compare"
    assert {a[0] for a in native["alerts"]} >= {"large_transaction", "structuring", "velocity"}
    assert seen["scanned"] == native["scanned"] == summary.transactions
    assert seen["alerts"] == native["alerts"]
    assert seen["reports"] == native["reports"]
    assert any(totals["transactions"] for totals, _ in native["reports"])
    assert seen["exports"] == native["exports"]
    assert all(native["exports"]) and any(e.count(b"\n") > 2 for e in native["exports"])
    assert table_digest(bank) == before  # not one row of the bank's tables changed


def test_sqlite_bank_database_gives_the_same_alerts_reports_and_exports(
    make_app: Any, tmp_path: Path
) -> None:
    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    bank = create_engine(bank_url)
    create_bank_schema(bank)
    mapped = {
        # banktasks' own tables in a database of their own, the bank's read from another
        "database_url": f"sqlite:///{tmp_path / 'banktasks.db'}",
        "data_database_url": bank_url,
        "data_mapping": BANK_MAPPING,
        "banktasks_var_dir": str(tmp_path / "mapped-var"),
    }
    _compare(make_app, f"sqlite:///{tmp_path / 'native.db'}", mapped, bank)
    own = create_engine(mapped["database_url"])
    with own.connect() as conn:
        tables = {row[0] for row in conn.execute(text("SELECT name FROM sqlite_master"))}
    assert "fraud_alerts" in tables and "transactions" not in tables


@pytest.mark.postgres
def test_postgresql_same_database_own_schema_gives_the_same_results(
    make_app: Any, pg_database_url: str, postgres_url: str, tmp_path: Path
) -> None:
    native_url = _extra_database(postgres_url)
    bank = create_engine(pg_database_url)
    create_bank_schema(bank)
    mapped = {
        # one database: the bank's tables in `public`, banktasks' in a schema of its own
        "database_url": pg_database_url,
        "database_schema": "banktasks",
        "data_mapping": {**BANK_MAPPING, "schema": "public"},
        "banktasks_var_dir": str(tmp_path / "mapped-var"),
    }
    _compare(make_app, native_url, mapped, bank)
    with bank.connect() as conn:
        schemas = dict(
            conn.execute(
                text(
                    "SELECT table_name, table_schema FROM information_schema.tables "
                    "WHERE table_name IN ('fraud_alerts', 'banking_transaction', 'transactions')"
                )
            ).all()
        )
    assert schemas == {"fraud_alerts": "banktasks", "banking_transaction": "public"}


def _extra_database(postgres_url: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{postgres_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{postgres_url}/{name}"


@pytest.mark.postgres
def test_postgresql_refuses_a_write_to_the_mapped_tables(
    make_app: Any, pg_database_url: str
) -> None:
    bank = create_engine(pg_database_url)
    create_bank_schema(bank)
    app = make_app(database_url=pg_database_url, data_mapping=BANK_MAPPING)
    with pytest.raises(Exception, match="read-only transaction"), data_scope() as session:
        session.execute(text("DELETE FROM banking_transaction"))
    assert app.runtime.data.mapped


def test_sqlite_refuses_a_write_to_the_mapped_tables(make_app: Any, tmp_path: Path) -> None:
    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    create_bank_schema(create_engine(bank_url))
    make_app(data_mapping=BANK_MAPPING, data_database_url=bank_url)
    with pytest.raises(Exception, match="readonly"), data_scope() as session:
        session.execute(text("DELETE FROM banking_transaction"))


# --- a mapping that does not fit: one clear line, at start-up ---------------------------


@pytest.fixture
def bank_engine(tmp_path: Path) -> Any:
    engine = create_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_bank_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE float_tx AS SELECT * FROM banking_transaction"))
        conn.execute(text("ALTER TABLE float_tx DROP COLUMN amount"))
        conn.execute(text("ALTER TABLE float_tx ADD COLUMN amount FLOAT"))
        conn.execute(text("CREATE TABLE fine_tx AS SELECT * FROM banking_transaction"))
        conn.execute(text("ALTER TABLE fine_tx DROP COLUMN amount"))
        conn.execute(text("ALTER TABLE fine_tx ADD COLUMN amount NUMERIC(18, 4)"))
    return engine


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"transactions__table": "banking_txn"},
            "DATA_MAPPING.transactions.table: no table 'banking_txn'",
        ),
        (
            {"accounts__columns": {"user_id": "customer_id"}},
            "DATA_MAPPING.accounts.columns.user_id: table 'banking_account' has no column "
            "'customer_id'",
        ),
        (
            {"transactions__table": "float_tx"},
            "DATA_MAPPING.transactions.columns.amount: column float_tx.amount is FLOAT: an exact "
            "NUMERIC/DECIMAL expected (a float cannot hold money exactly)",
        ),
        (
            {"transactions__table": "fine_tx"},
            "column fine_tx.amount is NUMERIC(18, 4): 4 decimal places would be rounded",
        ),
        (
            {"amounts": "minor"},
            "DATA_MAPPING.accounts.columns.balance: column banking_account.balance is "
            "NUMERIC(14, 2): integer minor units expected",
        ),
        (
            {"transactions__values": {"kind": {"DEPOSIT": "cash_in"}}},
            "DATA_MAPPING.transactions.values.kind: cash_in not banktasks value(s)",
        ),
    ],
)
def test_a_mapping_that_does_not_fit_the_database_is_one_clear_error(
    bank_engine: Any, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_mapping(DataMapping.model_validate(_mapping(**changes)), bank_engine)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_fitting_mapping_passes(bank_engine: Any) -> None:
    check_mapping(DataMapping.model_validate(BANK_MAPPING), bank_engine)


def test_channel_values_translate(bank_engine: Any) -> None:
    from core.sources import mapped_tables

    _bank_rows(bank_engine, *({"channel": c} for c in ("CASH", "BOOK", None, "CARD")))
    t = mapped_tables(DataMapping.model_validate(BANK_MAPPING), "sqlite").transactions
    with bank_engine.connect() as conn:
        channels = conn.execute(select(t.c.channel).order_by(t.c.id)).scalars().all()
    assert channels == ["cash", "internal", None, "card"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"users__columns": {"nickname": "x"}}, "unknown field(s) nickname"),
        ({"accounts__columns": {"number": ["a", "b"]}}, "only full_name may list several"),
        ({"transactions__columns": {"amount": ""}}, "columns.amount: this field is required"),
        ({"users__values": {"email": {"A": "b"}}}, "cannot translate email"),
        ({"amounts": "float"}, "AMOUNTS='float': Input should be 'decimal' or 'minor'"),
    ],
)
def test_a_badly_shaped_mapping_is_refused_when_settings_load(
    make_app: Any, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"DATA_MAPPING|data_mapping") as caught:
        make_app(data_mapping=_mapping(**changes))
    assert message in str(caught.value)


def test_a_worker_with_a_mapping_that_does_not_fit_stops_with_one_line(
    tmp_path: Path, broker_url: str
) -> None:
    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    create_bank_schema(create_engine(bank_url))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": broker_url,
        "BANKTASKS_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'own.db'}",
        "DATA_DATABASE_URL": bank_url,
        "DATA_MAPPING": json.dumps(_mapping(transactions__columns={"kind": "type"})),
    }
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "core", "worker", "--pool=solo", "-Q", "none"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2
    assert worker.stderr.strip().splitlines()[-1] == (
        "banktasks: configuration error: DATA_MAPPING.transactions.columns.kind: table "
        "'banking_transaction' has no column 'type'; its columns: account_id, amount, "
        "channel, counterparty, created_at, currency, description, id, status, "
        "transaction_type, updated_at"
    )


def test_db_init_checks_the_mapping_and_creates_only_banktasks_tables(
    make_app: Any, tmp_path: Path
) -> None:
    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    create_bank_schema(create_engine(bank_url))
    app = make_app(
        database_url=f"sqlite:///{tmp_path / 'own.db'}",
        data_database_url=bank_url,
        data_mapping=BANK_MAPPING,
    )
    check_data_mapping(app.runtime)
    created = app.runtime.db.create_all()
    assert "fraud_alerts" in created and "export_exports" in created
    assert not {"users", "accounts", "transactions"} & set(created)


def test_db_seed_refuses_to_write_mapped_tables(tmp_path: Path, broker_url: str) -> None:
    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    create_bank_schema(create_engine(bank_url))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": broker_url,
        "BANKTASKS_VAR_DIR": str(tmp_path / "var"),
        "DATA_DATABASE_URL": bank_url,
        "DATA_MAPPING": json.dumps(BANK_MAPPING),
    }
    seeding = subprocess.run(
        [sys.executable, "-m", "core.cli", "db", "seed", "--users", "2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert seeding.returncode == 1
    assert "DATA_MAPPING is set" in seeding.stderr
    assert table_digest(create_engine(bank_url))["banking_transaction"][0] == 0


def _plan(engine: Any, query: Any) -> str:
    """The plan of `query` as banktasks sends it (SQLite: EXPLAIN QUERY PLAN; PG: EXPLAIN)."""
    sent: list[tuple[str, Any]] = []
    listener = lambda *args: sent.append((args[2], args[3]))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with engine.connect() as conn:
            conn.execute(query).all()
            statement, params = sent[-1]
            explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            rows = conn.exec_driver_sql(explain + statement, params).all()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_the_printed_indexes_serve_the_windows_through_the_mapping(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from core.models import TransactionStatus
    from core.sources import mapped_tables, recommended_indexes

    url = (
        f"sqlite:///{tmp_path / 'bank.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_database_url")
    )
    engine = create_engine(url)
    create_bank_schema(engine)
    mapping = DataMapping.model_validate(BANK_MAPPING)
    with engine.begin() as conn:
        for statement in recommended_indexes(mapping, backend):
            conn.execute(text(statement))
        if backend == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))  # an empty table: force the choice
    tables = mapped_tables(mapping, backend)
    t, now = tables.Transaction, utcnow()
    window = select(t.id).where(t.account_id == 3, t.created_at >= now, t.created_at < now)
    pending = select(func.count()).where(t.status == TransactionStatus.pending, t.created_at < now)
    for query, index in (
        (window, "banktasks_banking_transaction_account_id_created_at"),
        (pending, "banktasks_banking_transaction_status_created_at"),
    ):
        plan = _plan(engine, query)
        if backend == "sqlite":
            assert f"USING INDEX {index} (" in plan
        else:  # on an empty table PostgreSQL picks any of them: the time range is in it
            assert "using banktasks_banking_transaction_" in plan
            assert "Index Cond: " in plan and "EXTRACT(epoch FROM" in plan


def test_the_plugin_api_recipe_reads_both_ways(make_app: Any, tmp_path: Path) -> None:
    """docs/plugin-api.md's `current().data` example gives the same sum on banktasks'
    tables and on the bank's."""
    import re

    text_ = (ROOT / "docs" / "plugin-api.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", text_, re.S) if "deposits_cents" in b
    )
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/plugin-api.md", "exec"), namespace)
    native_url = f"sqlite:///{tmp_path / 'native.db'}"
    _native_data(native_url, transactions=500)
    native_engine = create_engine(native_url)
    with native_engine.connect() as conn:
        expected = dict(
            conn.execute(
                text(
                    "SELECT account_id, SUM(amount_minor) FROM transactions "
                    "WHERE kind = 'deposit' GROUP BY account_id"
                )
            ).all()
        )
    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    create_bank_schema(create_engine(bank_url))
    copy_from_native(native_engine, create_engine(bank_url))
    accounts = sorted(expected)[:5]
    make_app(database_url=native_url)
    assert [namespace["deposits_cents"](a) for a in accounts] == [expected[a] for a in accounts]
    make_app(
        database_url=f"sqlite:///{tmp_path / 'own.db'}",
        data_database_url=bank_url,
        data_mapping=BANK_MAPPING,
    )
    assert [namespace["deposits_cents"](a) for a in accounts] == [expected[a] for a in accounts]


def test_optional_fields_mapped_to_nothing_read_their_defaults(tmp_path: Path) -> None:
    from core.sources import mapped_tables

    engine = create_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_bank_schema(engine)
    _bank_rows(
        engine,
        {
            "amount": 0.29,
            "currency": "EUR",
            "transaction_type": "FEE",
            "status": "FAILED",
            "channel": "BOOK",
            "counterparty": "ACME",
            "description": "x",
            "created_at": "2024-01-15 10:00:00.000001",
            "updated_at": "2024-01-16 00:00:00",
        },
        currency="EUR",
        balance=12.5,
        number="DE001",
    )
    nothing = {
        "users": ["is_active", "created_at"],
        "accounts": ["currency", "status", "balance", "created_at"],
        "transactions": [
            "currency",
            "status",
            "channel",
            "counterparty",
            "description",
            "updated_at",
        ],
    }
    mapping = _mapping(
        **{
            f"{model}__columns": {
                **BANK_MAPPING[model].get("columns", {}),
                **dict.fromkeys(fields, ""),
            }
            for model, fields in nothing.items()
        }
    )
    check_mapping(DataMapping.model_validate(mapping), engine)
    tables = mapped_tables(DataMapping.model_validate(mapping), "sqlite")
    with engine.connect() as conn:
        user = conn.execute(select(tables.users)).one()
        account = conn.execute(select(tables.accounts)).one()
        tx = conn.execute(select(tables.transactions)).one()
    assert (user.full_name, user.is_active, user.created_at) == ("Ann", True, None)
    assert (account.currency, account.status, account.created_at) == ("USD", "active", None)
    assert str(account.balance_minor) == "0.00"
    assert (tx.currency, tx.status, tx.counterparty, tx.description) == (
        "USD",
        "completed",
        None,
        None,
    )
    assert str(tx.amount_minor) == "0.29" and tx.kind == "fee" and tx.channel is None
    assert tx.updated_at == tx.created_at and tx.created_at.microsecond == 1


def test_sqlite_times_are_exact_to_the_microsecond_near_a_whole_second(tmp_path: Path) -> None:
    """strftime('%s') rounds to milliseconds first: .9995 s and up must not become the next
    second."""
    from core.db import to_micros
    from core.sources import mapped_tables

    engine = create_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_bank_schema(engine)
    stamps = ["2024-01-15 10:00:55.999573", "2024-01-15 10:00:55.999499", "2024-01-15 10:00:56"]
    _bank_rows(engine, *({"created_at": at, "updated_at": at} for at in stamps))
    t = mapped_tables(DataMapping.model_validate(BANK_MAPPING), "sqlite").transactions
    with engine.connect() as conn:
        raw = (
            conn.execute(select(type_coerce(t.c.created_at, BigInteger)).order_by(t.c.id))
            .scalars()
            .all()
        )
    expected = [to_micros(datetime.fromisoformat(at).replace(tzinfo=UTC)) for at in stamps]
    assert raw == expected


def test_reading_a_bank_sqlite_file_leaves_it_as_it_was(make_app: Any, tmp_path: Path) -> None:
    bank = tmp_path / "bank.db"
    create_bank_schema(create_engine(f"sqlite:///{bank}"))
    bank.chmod(0o644)
    mode, journal = bank.stat().st_mode & 0o777, _journal_mode(bank)
    assert journal == "delete"
    app = make_app(data_database_url=f"sqlite:///{bank}", data_mapping=BANK_MAPPING)
    check_data_mapping(app.runtime)
    with data_scope() as session:
        session.execute(select(app.runtime.data.transactions)).all()
    app.runtime.data_db.dispose()
    assert (bank.stat().st_mode & 0o777, _journal_mode(bank)) == (mode, journal)


def _journal_mode(path: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def _bank_rows(engine: Any, *transactions: dict[str, Any], **account: Any) -> None:
    """One inactive customer (user 1), one account (1, with `account` overrides) and `transactions`
    (each a dict of `banking_transaction` columns over defaults), written as a bank would."""
    at = "2024-01-15 10:00:00"
    user = dict(id=1, username="u1", email="a@example.com", first_name="Ann", last_name="")
    defaults = dict(
        account_id=1,
        amount=1,
        currency="USD",
        transaction_type="DEPOSIT",
        status="COMPLETED",
        description="",
        created_at=at,
        updated_at=at,
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO auth_user (id, username, email, first_name, last_name, is_active, "
                "date_joined) VALUES (:id, :username, :email, :first_name, :last_name, 0, :at)"
            ),
            {**user, "at": at},
        )
        values = {
            "id": 1,
            "owner_id": 1,
            "number": "N1",
            "currency": "USD",
            "balance": 0,
            "status": "ACTIVE",
            "opened_at": at,
            **account,
        }
        conn.execute(
            text(
                "INSERT INTO banking_account (id, owner_id, number, currency, balance, status, "
                "opened_at) VALUES (:id, :owner_id, :number, :currency, :balance, :status, "
                ":opened_at)"
            ),
            values,
        )
        for tid, row in enumerate(transactions, start=1):
            columns = {"id": tid, **defaults, **row}
            names = ", ".join(columns)
            conn.execute(
                text(
                    f"INSERT INTO banking_transaction ({names}) VALUES "
                    f"({', '.join(':' + n for n in columns)})"
                ),
                columns,
            )
