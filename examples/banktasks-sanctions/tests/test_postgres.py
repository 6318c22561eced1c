"""The same SQL on PostgreSQL: the normalisation in the JOIN, and refreshes at the same time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from banktasks_testing import fake_plugin, make_account, make_transaction

from tests.helpers import LISTED, T0, run

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_app(make_app, pg_database_url, write_list, alerts):
    """fraud + sanctions on a fresh PostgreSQL database."""
    listener = fake_plugin("alerts_seen", on_fraud_alert=lambda alert: alerts.append(alert))
    return make_app(
        "fraud",
        "sanctions",
        listener,
        database_url=pg_database_url,
        plugin_settings={"sanctions": {"list_path": str(write_list())}},
    )


def test_the_rule_matches_on_postgresql(pg_app, alerts):
    run(pg_app, "sanctions.refresh_sanctions_list")
    with pg_app.runtime.db.session() as s:
        account = make_account(s)
        hit = make_transaction(s, account, at=T0, counterparty="ACME HOLDINGS, LTD.").id
        make_transaction(s, account, at=T0, counterparty="ACME Holding Ltd.")
    window = {"since": T0 - timedelta(hours=1), "until": T0 + timedelta(hours=1)}
    assert run(pg_app, "fraud.analyze_fraud_patterns", **window)["by_rule"] == {
        "large_transaction": 0,
        "sanctioned_counterparty": 1,
        "structuring": 0,
        "velocity": 0,
    }
    assert [alert.transaction_id for alert in alerts] == [hit]


def test_refreshes_at_the_same_time_both_succeed(pg_app):
    task = pg_app.tasks["sanctions.refresh_sanctions_list"]

    def refresh(_: int) -> int:
        pg_app.set_current()  # Celery's current app is per thread
        return task.apply().get()["entries"]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(refresh, range(8))) == [len(LISTED)] * 8
