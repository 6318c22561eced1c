"""`banktasks db upgrade`: a database made by the old `db init` (tests/data/, the schema
of commit c76ee3c), holding data, is upgraded in place and loses nothing; a new one is
created and stamped; each plugin has its own version chain, a third-party one too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select, text

from core.db import Base
from core.migrate import current_versions, upgrade
from core.models import Transaction, TransactionChannel

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
CHAINS = {"core", "fraud", "reports", "export", "notifications"}
HEADS = {
    "core": "core_0002",
    "export": "export_0002",
    "fraud": "fraud_0003",
    **{c: f"{c}_0001" for c in CHAINS - {"core", "export", "fraud"}},
}

ROWS = {
    "users": "INSERT INTO users (id, email, full_name, is_active, created_at) VALUES "
    "(1, 'ann@example.com', 'Ann Lee', TRUE, 1704067200000000)",
    "accounts": "INSERT INTO accounts (id, user_id, number, currency, balance_minor, status, "
    "created_at) VALUES (1, 1, 'DE89370400440532013000', 'EUR', 1234567, 'active', "
    "1704067200000000)",
    "transactions": "INSERT INTO transactions (id, account_id, amount_minor, currency, kind, "
    "status, counterparty, description, created_at, updated_at) VALUES "
    "(1, 1, 1000001, 'EUR', 'deposit', 'completed', 'ACME', 'salary', 1704067200000001, "
    "1704067200000001), (2, 1, 5, 'EUR', 'fee', 'pending', NULL, NULL, 1704067300000000, "
    "1704067300000000)",
    "fraud_alerts": "INSERT INTO fraud_alerts (id, rule, account_id, transaction_id, severity, "
    "score, status, evidence, dedup_key, created_at) VALUES (1, 'large_transaction', 1, 1, "
    "'high', 1.0, 'open', '{\"amount\": \"10000.01\"}', 'tx:1', 1704067200000002)",
    "export_exports": "INSERT INTO export_exports (id, idempotency_key, user_id, format, "
    "start_date, end_date, path, file_name, rows, bytes, sha256, created_at) VALUES "
    "(1, 'task:x', 1, 'csv', '2024-01-01', '2024-01-31', '/x.csv', 'x.csv', 2, 99, "
    "'ab', 1704067200000003)",
}


def _old_db_init(url: str) -> None:
    """What `banktasks db init` made before migrations existed, with data in it."""
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    schema = (DATA / f"schema_2026_12_{dialect}.sql").read_text()
    statements = [s.strip() for s in schema.split(";\n") if s.strip() and "CREATE" in s]
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(
                statement.split("\n", 2)[-1] if statement.startswith("--") else statement
            )
        for insert in ROWS.values():
            conn.exec_driver_sql(insert)
    engine.dispose()


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        dump = {
            table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in ROWS
        }
    engine.dispose()
    return dump


def _schema_diffs(url: str) -> list[Any]:
    """What Alembic's autogenerate sees between the database and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    return [d for d in diffs if not (isinstance(d, tuple) and d[0] == "remove_table")]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_database_url"))


def test_a_database_from_the_old_db_init_upgrades_in_place_and_keeps_its_data(
    url: str, make_app: Any
) -> None:
    _old_db_init(url)
    before = _dump(url)
    assert "channel" not in {
        c["name"] for c in inspect(create_engine(url)).get_columns("transactions")
    }
    app = make_app(database_url=url)

    done = upgrade(app.runtime)

    assert done == dict.fromkeys(CHAINS, "stamped baseline, upgraded")
    assert current_versions(app.runtime) == HEADS
    after = _dump(url)
    # every row kept; transactions gained one column, fraud_alerts four (at the end: the rule
    # version and settings hash, fraud_0002; the case and suppression ids, fraud_0003), all
    # NULL for the old rows; nothing else
    grown = {"transactions", "fraud_alerts"}
    assert {t: rows for t, rows in after.items() if t not in grown} == {
        t: rows for t, rows in before.items() if t not in grown
    }
    assert [row[:-4] for row in after["fraud_alerts"]] == before["fraud_alerts"]
    assert [row[-4:] for row in after["fraud_alerts"]] == [(None, None, None, None)]
    columns = [c["name"] for c in inspect(create_engine(url)).get_columns("transactions")]
    channel = columns.index("channel")
    assert [row[:channel] + row[channel + 1 :] for row in after["transactions"]] == before[
        "transactions"
    ]
    assert [row[channel] for row in after["transactions"]] == [None, None]
    assert _schema_diffs(url) == []  # the migrated schema is the models' schema
    engine = create_engine(url)
    with engine.begin() as conn:  # fraud_audit came with its append-only triggers
        conn.exec_driver_sql(
            "INSERT INTO fraud_audit (at, actor, action, object_type, object_id, details) "
            "VALUES (1704067200000004, 'system', 'case.opened', 'case', 1, '{}')"
        )
    for statement in ("UPDATE fraud_audit SET actor = 'x'", "DELETE FROM fraud_audit"):
        with pytest.raises(Exception, match="fraud_audit is append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    engine.dispose()

    with app.runtime.db.session() as session:
        old = session.get(Transaction, 1)
        assert old is not None and old.channel is None and str(old.amount) == "10000.01"
        session.add(
            Transaction(
                id=3,
                account_id=1,
                amount=old.amount,
                kind="deposit",
                channel=TransactionChannel.cash,
            )
        )
    with app.runtime.db.session() as session:
        assert session.scalars(select(Transaction.channel).order_by(Transaction.id)).all() == [
            None,
            None,
            "cash",
        ]
    assert upgrade(app.runtime) == dict.fromkeys(CHAINS, "current")


def test_a_new_database_is_created_from_the_models_and_stamped(url: str, make_app: Any) -> None:
    app = make_app(database_url=url)  # make_app's create_all made the tables, no versions
    empty = url.replace("old.db", "new.db") if url.startswith("sqlite") else None
    if empty:
        app = make_app(database_url=empty)
        Base.metadata.drop_all(app.runtime.db.engine)
    else:
        Base.metadata.drop_all(app.runtime.db.engine)
    assert upgrade(app.runtime) == dict.fromkeys(CHAINS, "created")
    assert current_versions(app.runtime) == HEADS
    assert _schema_diffs(empty or url) == []


def test_a_plugin_enabled_later_gets_its_tables_and_its_chain(
    make_app: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'later.db'}"
    first = make_app(database_url=url, banktasks_disable=["fraud"])
    Base.metadata.drop_all(first.runtime.db.engine)
    assert "fraud" not in upgrade(first.runtime)
    assert "fraud_alerts" not in inspect(create_engine(url)).get_table_names()
    later = make_app(database_url=url)
    fraud_tables = [t for t in Base.metadata.sorted_tables if t.name.startswith("fraud_")]
    Base.metadata.drop_all(later.runtime.db.engine, tables=fraud_tables)  # make_app made them
    assert upgrade(later.runtime) == {**dict.fromkeys(CHAINS, "current"), "fraud": "created"}
    assert "fraud_alerts" in inspect(create_engine(url)).get_table_names()


ACME_MODELS = """
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class AcmeNote(Base):
    __tablename__ = "acme_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(100))
    author: Mapped[str | None] = mapped_column(String(50), nullable=True)
"""

ACME_PLUGIN = """
from pathlib import Path

from core import hookimpl
from acme_plugin import models  # noqa: F401 - the plugin's tables


@hookimpl
def register_migrations():
    return Path(__file__).resolve().parent / "migrations"
"""

ACME_0001 = """
revision = "acme_0001"
down_revision = None
branch_labels = ("acme",)
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
"""

ACME_0002 = """
import sqlalchemy as sa
from alembic import op

from core.migrate import has_column

revision = "acme_0002"
down_revision = "acme_0001"
branch_labels = None
depends_on = None


def upgrade():
    if not has_column("acme_notes", "author"):
        with op.batch_alter_table("acme_notes") as batch:
            batch.add_column(sa.Column("author", sa.String(50), nullable=True))


def downgrade():
    pass
"""

RUN = """
import json, sys
from core import create_app, load_settings
from core.migrate import upgrade
from core.plugins import installed_entry_points
import acme_plugin.plugin as acme
app = create_app(load_settings(redis_url="redis://127.0.0.1:1/0"),
                 plugins=[*installed_entry_points(), ("acme", acme)])
print(json.dumps(upgrade(app.runtime)))
"""


def test_a_third_party_plugin_ships_its_own_chain(tmp_path: Path) -> None:
    package = tmp_path / "site" / "acme_plugin"
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(ACME_MODELS)
    (package / "plugin.py").write_text(ACME_PLUGIN)
    (package / "migrations" / "acme_0001_baseline.py").write_text(ACME_0001)
    (package / "migrations" / "acme_0002_author.py").write_text(ACME_0002)
    db = tmp_path / "bank.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:  # the plugin's table as its first release made it
        conn.exec_driver_sql("CREATE TABLE acme_notes (id INTEGER PRIMARY KEY, body VARCHAR(100))")
        conn.exec_driver_sql("INSERT INTO acme_notes VALUES (1, 'kept')")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
        "DATABASE_URL": f"sqlite:///{db}",
        "BANKTASKS_VAR_DIR": str(tmp_path / "var"),
    }

    def run() -> dict[str, str]:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(RUN)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.splitlines()[-1])

    first = run()
    assert first["acme"] == "stamped baseline, upgraded"
    assert first["core"] == "created"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id, body, author FROM acme_notes").all() == [
            (1, "kept", None)
        ]
        assert "acme_0002" in {r[0] for r in conn.exec_driver_sql("SELECT * FROM alembic_version")}
    assert run()["acme"] == "current"
