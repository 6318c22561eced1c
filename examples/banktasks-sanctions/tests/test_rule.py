"""The fraud rule `sanctioned_counterparty`, run by fraud's own task over a window."""

from __future__ import annotations

from datetime import timedelta

import pytest
from banktasks_testing import make_account, make_transaction
from sqlalchemy import event

from banktasks_sanctions import normalise_name
from tests.helpers import T0, run

REFRESH = "sanctions.refresh_sanctions_list"
ANALYSE = "fraud.analyze_fraud_patterns"
RULE = "sanctioned_counterparty"
WINDOW = {"since": T0 - timedelta(hours=1), "until": T0 + timedelta(hours=1)}


def plant(app, *payments):
    """Payments `(counterparty, at)` from one account; returns their ids."""
    with app.runtime.db.session() as s:
        account = make_account(s)
        return [make_transaction(s, account, at=at, counterparty=cp).id for cp, at in payments]


# --8<-- [start:test-match]
def test_a_payment_to_a_listed_counterparty_is_a_critical_alert(screening_app, alerts):
    run(screening_app, REFRESH)
    (tid,) = plant(screening_app, ("ACME Holdings Ltd.", T0))

    result = run(screening_app, ANALYSE, **WINDOW)

    assert result["by_rule"][RULE] == 1
    (alert,) = alerts
    assert (alert.rule, alert.transaction_id, alert.severity) == (RULE, tid, "critical")
    assert alert.evidence == {
        "counterparty": "ACME Holdings Ltd.",
        "listed_name": "ACME Holdings Ltd.",
        "program": "SDGT",
        "amount": "100.00",
        "currency": "USD",
        "at": "2024-05-01T12:00:00Z",
    }
    assert run(screening_app, ANALYSE, **WINDOW)["alerts_created"] == 0  # one alert, ever


# --8<-- [end:test-match]


@pytest.mark.parametrize(
    "written",
    ["acme holdings ltd", "ACME HOLDINGS, LTD.", "  Acme-Holdings Ltd ", "ACMEHoldingsLtd"],
)
def test_names_match_whatever_their_case_spaces_and_punctuation(screening_app, written):
    run(screening_app, REFRESH)
    plant(screening_app, (written, T0))
    assert run(screening_app, ANALYSE, **WINDOW)["by_rule"][RULE] == 1


@pytest.mark.parametrize(
    "written", ["ACME Holding Ltd.", "ACME Holdings Ltd. 2", "ACME Holdings", "Blue Harbour"]
)
def test_a_near_miss_is_not_a_match(screening_app, written):
    run(screening_app, REFRESH)
    plant(screening_app, (written, T0), (None, T0))
    assert run(screening_app, ANALYSE, **WINDOW)["by_rule"][RULE] == 0


def test_only_the_window_since_inclusive_until_exclusive_is_screened(screening_app, alerts):
    run(screening_app, REFRESH)
    since, until = WINDOW["since"], WINDOW["until"]
    microsecond = timedelta(microseconds=1)
    inside = plant(
        screening_app,
        ("Blue Harbor Shipping", since),
        ("Blue Harbor Shipping", until - microsecond),
    )
    plant(
        screening_app,
        ("Blue Harbor Shipping", since - microsecond),
        ("Blue Harbor Shipping", until),
    )
    assert run(screening_app, ANALYSE, **WINDOW)["by_rule"][RULE] == 2
    assert sorted(alert.transaction_id for alert in alerts) == inside


def test_before_the_first_refresh_nothing_is_flagged(screening_app):
    plant(screening_app, ("ACME Holdings Ltd.", T0))
    assert run(screening_app, ANALYSE, **WINDOW)["by_rule"][RULE] == 0


def test_the_rule_is_one_query_however_many_rows(screening_app):
    run(screening_app, REFRESH)
    plant(screening_app, *[("ACME Holdings Ltd.", T0 + timedelta(seconds=i)) for i in range(50)])
    statements = []
    engine = screening_app.runtime.db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, …)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert run(screening_app, ANALYSE, **WINDOW)["by_rule"][RULE] == 50
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len([sql for sql in statements if "sanctions_entries" in sql]) == 1


def test_normalise_name():
    assert normalise_name(" ACME Holdings, Ltd. ") == "acmeholdingsltd"
    assert normalise_name("O'Brien-Smith") == "obriensmith"
