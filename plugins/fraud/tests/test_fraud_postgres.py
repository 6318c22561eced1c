"""The same rules, upsert and watermark on a real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from plugins.fraud import analyze_fraud_patterns

from .helpers import T0, Bank, analyse, check_seed_findings

pytestmark = pytest.mark.postgres
MINUTE = timedelta(minutes=1)
US = timedelta(microseconds=1)


@pytest.fixture
def pg_app(make_app, pg_database_url):
    app = make_app("fraud", database_url=pg_database_url)
    assert app.runtime.db.dialect == "postgresql"
    return app


def test_boundaries_on_postgresql(pg_app):
    bank = Bank(pg_app.runtime.db)
    at_line, above = bank.account(), bank.account()
    bank.tx(at_line, "10000.00", T0)
    large = bank.tx(above, "10000.01", T0)
    ten, straddle, spread = bank.account(), bank.account(), bank.account()
    bank.burst(ten, T0, 10, MINUTE)
    bank.burst(straddle, T0.replace(minute=50), 11, 2 * MINUTE)  # 10:50 .. 11:10
    bank.burst(spread, T0, 10, MINUTE)
    bank.tx(spread, "1.00", T0 + 60 * MINUTE)  # exactly an hour after the first: outside
    near, apart, split = bank.account(), bank.account(), bank.account()
    bank.txs(near, [("8999.99", T0), ("9999.99", T0 + MINUTE)], kind="deposit")
    bank.txs(apart, [("9500.00", T0), ("9500.00", T0 + timedelta(hours=24))], kind="deposit")
    bank.txs(split, [("9000.00", T0), ("9999.99", T0 + timedelta(hours=24) - US)], kind="deposit")

    result = analyse()
    assert result["by_rule"] == {"large_transaction": 1, "structuring": 1, "velocity": 1}
    assert [a.transaction_id for a in bank.alerts("large_transaction")] == [large]
    assert [a.account_id for a in bank.alerts("velocity")] == [straddle]
    assert [a.account_id for a in bank.alerts("structuring")] == [split]
    assert bank.alerts("velocity")[0].evidence["count"] == 11
    # ON CONFLICT DO NOTHING on PostgreSQL: a second run stores nothing.
    assert analyse()["alerts_created"] == 0
    assert len(bank.alerts()) == 3


def test_burst_spanning_two_runs_on_postgresql(pg_app, monkeypatch):
    bank = Bank(pg_app.runtime.db)
    account = bank.account()
    bank.burst(account, T0 - 10 * MINUTE, 6, MINUTE)
    bank.burst(account, T0 + MINUTE, 6, MINUTE)
    monkeypatch.setattr("plugins.fraud.engine.utcnow", lambda: T0)
    assert analyze_fraud_patterns()["alerts_created"] == 0
    monkeypatch.setattr("plugins.fraud.engine.utcnow", lambda: T0 + 15 * MINUTE)
    assert analyze_fraud_patterns()["by_rule"]["velocity"] == 1
    assert analyze_fraud_patterns()["alerts_created"] == 0


def test_seed_on_postgresql(pg_app):
    check_seed_findings(pg_app, users=60, transactions=3000)
