"""banktasks on the Django bank's own tables, end to end: Django migrates and writes the
data through its ORM; a real banktasks worker, configured with this project's
`banktasks.toml` mapping, finds the planted fraud, reports the day's exact totals and
exports user 1's transactions; the bank's code sends the seed's examples verbatim
(`manage.py run_banktasks_examples`, where `core` is banktasks' package and the app
labelled `core` is `bankcore`); and not one row of a Django table changes.

On SQLite banktasks' own tables are in a file of their own; on PostgreSQL they share the
Django database, in the schema `banktasks`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from banktasks_testing import wait_for
from core import data_scope
from plugins.fraud.models import FraudAlert
from sqlalchemy import create_engine, func, inspect, select, table, text
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[1]
REPO = EXAMPLE.parents[1]
DAY = "2024-01-15"
SEED_ARGS = ("--users", "20", "--transactions", "400", "--seed", "7", "--day", DAY)


@dataclass
class Bank:
    """The seeded Django bank: its database, the environment of its processes, what it
    planted."""

    url: str  # SQLAlchemy URL of the Django database
    env: dict[str, str]
    planted: dict[str, Any]

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python manage.py ARGS` in the bank's environment (must succeed)."""
        proc = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=EXAMPLE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    def query(self, sql: str, **params: Any) -> list[Any]:
        """Rows of a read of the Django database (the test's own connection)."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params))
        finally:
            engine.dispose()

    def cents(self, column: str) -> str:
        """SQL of a Django decimal column as exact integer cents (SQLite stores a REAL)."""
        return f"CAST(ROUND({column} * 100) AS BIGINT)"


def django_tables_digest(url: str) -> dict[str, tuple[int, int]]:
    """Every table Django made (not banktasks' own): (rows, hash of all rows)."""
    engine = create_engine(url)
    digest = {}
    try:
        names = [n for n in inspect(engine).get_table_names() if not n.startswith(_OWN)]
        with engine.connect() as conn:
            for name in names:
                rows = conn.execute(select(text("*")).select_from(table(name))).all()
                digest[name] = (len(rows), hash(tuple(sorted(map(repr, rows)))))
    finally:
        engine.dispose()
    assert {"auth_user", "banking_account", "banking_transaction", "core_branch"} <= set(digest)
    return digest


_OWN = ("fraud_", "reports_", "export_", "notifications_", "core_task_outbox", "core_failed")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bank(request: pytest.FixtureRequest, e2e: Any, tmp_path: Path, smtp_server: Any) -> Bank:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'django.db'}"
        e2e.set(DATA_DATABASE_URL=url)  # banktasks' own tables stay in e2e's SQLite file
    else:
        url = request.getfixturevalue("pg_database_url")
        e2e.set(DATABASE_URL=url, DATABASE_SCHEMA="banktasks")  # one database, two schemas
    e2e.set(
        BANKTASKS_CONFIG=str(EXAMPLE / "banktasks.toml"),
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_server.port),
    )
    env = {**os.environ, **e2e.env, "DJANGO_DATABASE_URL": url}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    seeded = Bank(url, env, {})
    seeded.manage("migrate", "-v", "0")
    seeded.planted = json.loads(seeded.manage("seed_bank", *SEED_ARGS).stdout)["planted"]
    return seeded


def test_banktasks_works_on_the_django_tables_and_never_writes_them(
    bank: Bank, e2e: Any, smtp_server: Any
) -> None:
    before = django_tables_digest(bank.url)
    init = subprocess.run(
        [sys.executable, "-m", "core.cli", "db", "init", "--json"],
        env=bank.env,
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    assert set(json.loads(init.stdout.splitlines()[-1]).values()) == {"created"}
    app = e2e.app()
    assert app.runtime.data.mapped

    # the channels, translated: Django's CASH ... BOOK are banktasks' cash ... internal
    t = app.runtime.data.transactions
    with data_scope() as session:
        seen = dict(session.execute(select(t.c.channel, func.count()).group_by(t.c.channel)).all())
    stored = dict(bank.query("SELECT channel, COUNT(*) FROM banking_transaction GROUP BY channel"))
    names = {"CASH": "cash", "CARD": "card", "WIRE": "wire", "ACH": "ach", "BOOK": "internal"}
    assert seen == {names[k]: n for k, n in stored.items()} and len(seen) == 5
    e2e.start_worker(concurrency=2)

    # fraud: exactly the planted patterns (the background raises nothing)
    analysis = (
        app.tasks["fraud.analyze_fraud_patterns"]
        .delay(since=f"{DAY}T00:00:00+00:00", until="2024-01-16T00:00:00+00:00")
        .get(timeout=120)
    )
    assert analysis["scanned"] == 400
    with app.runtime.db.session() as session:
        alerts = session.scalars(select(FraudAlert)).all()
    planted = bank.planted
    large = {a.transaction_id for a in alerts if a.rule == "large_transaction"}
    assert large == set(planted["large"])
    assert planted["exact_threshold"] not in large  # 10,000.00 is not over 10,000.00
    assert {a.account_id for a in alerts if a.rule == "velocity"} == {
        planted["velocity"]["account_id"]
    }
    structuring = [a for a in alerts if a.rule == "structuring"]
    assert [a.account_id for a in structuring] == [planted["structuring"]["account_id"]]
    assert structuring[0].evidence["total"] == "28500.00"
    assert {a.rule for a in alerts} == {"large_transaction", "velocity", "structuring"}

    # the daily report: the day's count and exact sums, straight from the Django table
    report = app.tasks["reports.generate_daily_reports"].delay(report_date=DAY).get(timeout=120)
    expected = {
        currency: f"{Decimal(cents) / 100:.2f}"
        for currency, cents in bank.query(
            f"SELECT currency, SUM({bank.cents('amount')}) FROM banking_transaction "
            "GROUP BY currency"
        )
    }
    assert report["totals"] == {"transactions": 400, "sums": expected}

    # the seed's examples, verbatim, from the bank's own code: e-mail, export, report
    out = bank.manage("run_banktasks_examples", "--wait", "--timeout", "120").stdout
    results = json.loads(out.splitlines()[-1])
    export = results["export"]
    rows = list(csv.DictReader(io.StringIO(Path(export["path"]).read_text())))
    ((count, cents),) = bank.query(
        f"SELECT COUNT(*), SUM({bank.cents('t.amount')}) FROM banking_transaction t "
        "JOIN banking_account a ON a.id = t.account_id WHERE a.owner_id = 1"
    )
    assert export["rows"] == len(rows) == count > 0
    assert sum(Decimal(row["amount"]) for row in rows) == Decimal(cents) / 100
    assert all(row["account"].startswith("****") for row in rows)
    ((email,),) = bank.query("SELECT email FROM auth_user WHERE id = 1")
    wait_for(
        lambda: [m for m in smtp_server.messages if m["Subject"] == "Account Update"],
        60,
        "the seed's 'Account Update' e-mail",
    )
    assert {m["To"] for m in smtp_server.messages if m["Subject"] == "Account Update"} == {email}

    assert django_tables_digest(bank.url) == before  # not one row of Django's tables changed
    if make_url(bank.url).get_backend_name() == "postgresql":
        ((schema,),) = bank.query(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'fraud_alerts'"
        )
        assert schema == "banktasks"


def test_the_projects_core_app_and_banktasks_core_live_side_by_side(bank: Bank) -> None:
    """The clash, resolved as recommended: the project's app module is `bankcore` with the
    label `core` (tables core_*, migrations unchanged); `import core` is banktasks'."""
    shown = bank.manage(
        "shell",
        "-v",
        "0",
        "-c",
        "import core, core.tasks, django.apps as d; "
        "print(d.apps.get_app_config('core').name, core.__file__)",
    ).stdout.splitlines()[-1]
    assert shown.split() == ["bankcore", str(REPO / "core" / "__init__.py")]
    assert bank.query("SELECT COUNT(*) FROM core_branch") == [(3,)]
