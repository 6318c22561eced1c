"""End to end: a real worker refreshes the list and runs the fraud analysis, through the broker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from banktasks_testing import make_account, make_transaction

from tests.helpers import T0


# --8<-- [start:test-e2e]
@pytest.mark.e2e
def test_refresh_then_analysis_through_a_real_worker(e2e, write_list):
    e2e.set(BANKTASKS_PLUGINS="fraud,sanctions", SANCTIONS_LIST_PATH=str(write_list()))
    app = e2e.app()  # the same environment as the worker: database, broker, settings
    with app.runtime.db.session() as s:
        make_transaction(s, make_account(s), at=T0, counterparty="Blue Harbor Shipping")
    e2e.start_worker()

    refreshed = app.tasks["sanctions.refresh_sanctions_list"].delay().get(timeout=60)
    analysed = (
        app.tasks["fraud.analyze_fraud_patterns"]
        .delay(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1))
        .get(timeout=60)
    )

    assert refreshed["entries"] == 2
    assert analysed["by_rule"]["sanctioned_counterparty"] == 1
    assert analysed["scanned"] == 1


# --8<-- [end:test-e2e]
