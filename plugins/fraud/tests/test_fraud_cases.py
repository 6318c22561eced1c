"""Cases (one open per customer), risk scores, the audit trail, and `banktasks cases`."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from banktasks_testing import fake_plugin, make_account, make_user
from plugins.fraud.audit import audit_trail
from plugins.fraud.cases import (
    CaseNotFoundError,
    CaseTransitionError,
    account_scores,
    assign_case,
    case_scores,
    close_case,
)
from plugins.fraud.models import FraudAlert, FraudAudit, FraudCase

from .helpers import T0, Bank, analyse, commands

MINUTE = timedelta(minutes=1)
_customers = itertools.count(1)


class Recorder:
    """A plugin that records on_fraud_case_opened and on_fraud_alert calls."""

    def __init__(self) -> None:
        self.cases: list[tuple[Any, Any]] = []
        self.alerts: list[Any] = []
        self.plugin = fake_plugin(
            "recorder",
            on_fraud_case_opened=lambda case, alert: self.cases.append((case, alert)),
            on_fraud_alert=lambda alert: self.alerts.append(alert),
        )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, make_app: Any, recorder: Recorder) -> Any:
    """The fraud app (and the recorder) on SQLite, and on PostgreSQL (marked `postgres`)."""
    if request.param == "sqlite":
        return make_app("fraud", recorder.plugin)
    url = request.getfixturevalue("pg_database_url")
    return make_app("fraud", recorder.plugin, database_url=url)


@pytest.fixture
def sqlite_app(make_app: Any, recorder: Recorder) -> Any:
    return make_app("fraud", recorder.plugin)


def customer(db: Any, accounts: int = 1) -> list[int]:
    """A new user with `accounts` accounts; their ids."""
    with db.session() as session:
        user = make_user(session, email=f"case-{next(_customers)}@example.com")
        return [make_account(session, user).id for _ in range(accounts)]


def cases(db: Any) -> list[FraudCase]:
    with db.session() as session:
        return list(session.scalars(select(FraudCase).order_by(FraudCase.id)))


def test_one_open_case_per_customer_across_analyses_and_accounts(app, recorder):
    db = app.runtime.db
    bank = Bank(db)
    first, second = customer(db, accounts=2)
    (other,) = customer(db)
    bank.tx(first, "15000.00", T0)
    bank.tx(second, "16000.00", T0 + MINUTE)
    bank.tx(other, "17000.00", T0)

    result = analyse()
    assert (result["alerts_created"], result["cases_opened"]) == (3, 2)
    opened = cases(db)
    assert len(opened) == 2 and {c.status for c in opened} == {"open"}
    assert [(c.id, a.account_id) for c, a in recorder.cases] == [
        (opened[0].id, first),
        (opened[1].id, other),
    ]
    assert recorder.cases[0][0].user_id == opened[0].user_id
    alerts = {a.account_id: a for a in bank.alerts()}
    assert alerts[first].case_id == alerts[second].case_id == opened[0].id
    assert alerts[other].case_id == opened[1].id
    assert len(recorder.alerts) == 3  # on_fraud_alert still fires per new alert

    bank.tx(second, "18000.00", T0 + 2 * MINUTE)  # a second analysis: joins the open case
    again = analyse()
    assert (again["alerts_created"], again["cases_opened"]) == (1, 0)
    assert len(cases(db)) == 2 and len(recorder.cases) == 2
    assert bank.alerts()[-1].case_id == opened[0].id

    closed = close_case(opened[0].id, "confirmed_fraud", "called the customer", "ann")
    assert (closed.status, closed.resolution, closed.open_user_id) == (
        "closed",
        "confirmed_fraud",
        None,
    )
    assert {a.status for a in bank.alerts() if a.case_id == opened[0].id} == {"resolved"}
    bank.tx(first, "19000.00", T0 + 3 * MINUTE)  # after the close: a new case
    third = analyse()
    assert third["cases_opened"] == 1
    new = cases(db)[-1]
    assert (new.user_id, new.status) == (opened[0].user_id, "open") and new.id != opened[0].id
    assert recorder.cases[-1][0].id == new.id
    trail = [(r["action"], r["actor"], r["object_id"]) for r in audit_trail("case")]
    one, two, three = opened[0].id, opened[1].id, new.id
    assert trail == [
        ("case.opened", "system", one),
        ("case.opened", "system", two),
        ("case.alerts_added", "system", one),
        ("case.alerts_added", "system", two),
        ("case.announced", "system", one),
        ("case.announced", "system", two),
        ("case.alerts_added", "system", one),  # the second analysis' alert joins
        ("case.closed", "ann", one),
        ("case.opened", "system", three),
        ("case.alerts_added", "system", three),
        ("case.announced", "system", three),
    ]
    added = [r["details"]["alert_ids"] for r in audit_trail("case")[2:4]]
    assert added == [
        [alerts[first].id, alerts[second].id],
        [alerts[other].id],
    ]


def test_a_case_is_announced_once_from_its_first_alert_at_the_minimum_severity(app, recorder):
    """FRAUD_ALERT_MIN_SEVERITY is high: a velocity burst (medium) opens a case quietly; the
    customer's first high alert announces it, in a later analysis; later ones do not."""
    db = app.runtime.db
    bank = Bank(db)
    account, other = customer(db, accounts=2)
    bank.burst(account, T0, 11, MINUTE)  # 11 in an hour: velocity, medium
    first = analyse()
    (case,) = cases(db)
    assert (first["cases_opened"], recorder.cases, case.announced_at) == (1, [], None)

    bank.tx(other, "15000.00", T0 + 2 * timedelta(hours=1))  # large_transaction, high
    second = analyse()
    assert (second["cases_opened"], second["case_notify_failed"]) == (0, 0)
    ((announced, alert),) = recorder.cases
    assert (announced.id, alert.rule, alert.account_id) == (case.id, "large_transaction", other)
    assert cases(db)[0].announced_at is not None

    bank.tx(account, "16000.00", T0 + 3 * timedelta(hours=1))
    analyse()
    assert len(recorder.cases) == 1  # announced once
    assert {a.case_id for a in bank.alerts()} == {case.id}


def test_the_database_keeps_one_open_case_per_customer(app):
    db = app.runtime.db
    with db.session() as session:
        session.add(FraudCase(user_id=7, open_user_id=7))
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(FraudCase(user_id=7, open_user_id=7))
    with db.session() as session:  # closed cases (NULL) do not collide
        session.add_all(
            [FraudCase(user_id=7, status="closed"), FraudCase(user_id=7, status="closed")]
        )


def test_audit_rows_are_append_only(app):
    db = app.runtime.db
    Bank(db).tx(customer(db)[0], "15000.00", T0)
    analyse()
    with db.session() as session:
        assert session.scalar(select(FraudAudit.action)) == "case.opened"
    for statement in (
        update(FraudAudit).values(actor="mallory"),
        text("DELETE FROM fraud_audit"),
    ):
        with pytest.raises(DBAPIError, match="fraud_audit is append-only"), db.session() as s:
            s.execute(statement)
    # opened, the alert added, announced (high): all by the analysis, all kept
    assert [r["actor"] for r in audit_trail()] == ["system", "system", "system"]


def test_risk_scores_with_custom_weights(make_app):
    app = make_app("fraud", plugin_settings={"fraud": {"risk_weights": {"high": 10, "medium": 2}}})
    db = app.runtime.db
    bank = Bank(db)
    big, busy = customer(db)[0], customer(db)[0]
    bank.tx(big, "15000.00", T0)  # large_transaction: high
    bank.tx(big, "15000.00", T0 + MINUTE)
    bank.burst(busy, T0, 11, MINUTE)  # velocity: medium
    bank.tx(busy, "15000.00", T0 + timedelta(hours=3))
    analyse()
    with db.session() as session:
        assert account_scores(session) == {big: 20.0, busy: 12.0}
        assert account_scores(session, [busy]) == {busy: 12.0}
        by_case = case_scores(session)
    assert sorted((v["alerts"], v["score"]) for v in by_case.values()) == [(2, 12.0), (2, 20.0)]
    alerts = bank.alerts("large_transaction")
    close_case(alerts[0].case_id, "no_action", "known", "ann")  # its alerts no longer count
    with db.session() as session:
        assert account_scores(session) == {busy: 12.0}
        assert case_scores(session)[alerts[0].case_id] == {"alerts": 2, "score": 0.0}


def test_assign_and_close_transitions(sqlite_app):
    db = sqlite_app.runtime.db
    Bank(db).tx(customer(db)[0], "15000.00", T0)
    analyse()
    (case,) = cases(db)
    assigned = assign_case(case.id, "bob", "ann")
    assert (assigned.status, assigned.assignee) == ("investigating", "bob")
    assert assign_case(case.id, "carol", "ann").assignee == "carol"  # reassigned
    closed = close_case(case.id, "false_positive", "  payroll  ", "carol")
    assert (closed.status, closed.note, closed.closed_at is not None) == (
        "closed",
        "payroll",
        True,
    )
    assert [a.status for a in Bank(db).alerts()] == ["false_positive"]
    with pytest.raises(CaseTransitionError, match=f"#{case.id} is already closed"):
        close_case(case.id, "no_action", "again", "ann")
    with pytest.raises(CaseTransitionError, match="a closed case cannot be assigned"):
        assign_case(case.id, "bob", "ann")
    with pytest.raises(CaseTransitionError, match="give a note saying what was found"):
        close_case(case.id, "no_action", "  ", "ann")
    with pytest.raises(CaseTransitionError, match="'maybe' is not one of: confirmed_fraud"):
        close_case(case.id, "maybe", "x", "ann")
    with pytest.raises(CaseNotFoundError, match="fraud case #999 does not exist"):
        assign_case(999, "bob", "ann")
    trail = audit_trail("case", case.id)
    assert [r["action"] for r in trail] == [
        "case.opened",
        "case.alerts_added",
        "case.announced",
        "case.assigned",
        "case.assigned",
        "case.closed",
    ]
    assert trail[3]["details"] == {
        "before": {"status": "open", "assignee": None},
        "after": {"status": "investigating", "assignee": "bob"},
    }
    assert trail[5]["details"]["resolution"] == "false_positive"


def test_a_failing_case_listener_is_counted(make_app):
    def boom(case, alert):
        raise RuntimeError("smtp down")

    app = make_app("fraud", fake_plugin("broken", on_fraud_case_opened=boom))
    db = app.runtime.db
    Bank(db).tx(customer(db)[0], "15000.00", T0)
    result = analyse()
    assert (result["cases_opened"], result["case_notify_failed"]) == (1, 1)
    assert len(cases(db)) == 1  # the case stays


# -- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def banktasks(sqlite_app):
    return commands(sqlite_app)


def test_cases_commands(sqlite_app, banktasks):
    db = sqlite_app.runtime.db
    account = customer(db)[0]
    Bank(db).tx(account, "15000.00", T0)
    analyse()
    (case,) = cases(db)
    listed = banktasks("cases", "list")
    assert listed.exit_code == 0, listed.output
    assert f"{case.id}" in listed.output and "open" in listed.output and "7.0" in listed.output
    rows = json.loads(banktasks("cases", "list", "--status", "open", "--json").output)
    assert [(r["id"], r["alerts"], r["score"]) for r in rows] == [(case.id, 1, 7.0)]
    assert json.loads(banktasks("cases", "list", "--status", "closed", "--json").output) == []

    shown = json.loads(banktasks("cases", "show", str(case.id), "--json").output)
    from core.models import Account

    with db.session() as session:
        number = session.get(Account, account).number
    assert number not in json.dumps(shown)
    assert shown["alerts"][0]["account"] == f"****{number[-4:]}"
    assert [r["action"] for r in shown["audit"]] == [
        "case.opened",
        "case.alerts_added",
        "case.announced",
    ]
    text = banktasks("cases", "show", str(case.id)).output
    assert "alerts (1):" in text and number not in text
    assert f'case.opened        {{"alert_id": {shown["alerts"][0]["id"]}, ' in text

    out = banktasks("cases", "assign", str(case.id), "--to", "bob", "--by", "ann")
    assert out.exit_code == 0 and "investigating, assigned to bob" in out.output
    assert "bob" in banktasks("cases", "list", "--assignee", "bob").output
    out = banktasks(
        "cases", "close", str(case.id), "--resolution", "no_action", "--note", "ok", "--by", "ann"
    )
    assert out.exit_code == 0 and "closed (no_action)" in out.output
    again = banktasks("cases", "close", str(case.id), "--resolution", "no_action", "--note", "x")
    assert again.exit_code == 2 and "already closed" in again.output
    missing = banktasks("cases", "show", "999")
    assert missing.exit_code == 2 and "fraud case #999 does not exist" in missing.output
    audit = json.loads(banktasks("fraud", "audit", "--object", "case", "--json").output)
    assert [(r["action"], r["actor"]) for r in audit] == [
        ("case.opened", "system"),
        ("case.alerts_added", "system"),
        ("case.announced", "system"),
        ("case.assigned", "ann"),
        ("case.closed", "ann"),
    ]
    one = banktasks("fraud", "audit", "--object", "case", "--id", str(case.id)).output
    assert "case.closed" in one
    unclear = banktasks("fraud", "audit", "--id", str(case.id))
    assert unclear.exit_code == 2 and "--id needs --object" in unclear.output
    assert len(audit_trail()) == 5  # the failed close wrote nothing
    with db.session() as session:
        assert session.scalar(select(FraudAlert.status)) == "resolved"


@pytest.mark.postgres
def test_audit_is_append_only_in_its_own_schema(make_app, pg_database_url):
    """DATABASE_SCHEMA: the trigger function lives in banktasks' schema, next to the table."""
    app = make_app("fraud", database_url=pg_database_url, database_schema="bt_audit")
    db = app.runtime.db
    Bank(db).tx(customer(db)[0], "15000.00", T0)
    analyse()
    with db.session() as session:
        found = (
            session.execute(
                text(
                    "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE p.proname = 'fraud_audit_append_only'"
                )
            )
            .scalars()
            .all()
        )
    assert found == ["bt_audit"]
    with pytest.raises(DBAPIError, match="append-only"), db.session() as session:
        session.execute(update(FraudAudit).values(actor="mallory"))


def test_cases_list_says_when_it_shows_only_the_newest(sqlite_app, banktasks):
    db = sqlite_app.runtime.db
    for _ in range(3):
        Bank(db).tx(customer(db)[0], "15000.00", T0)
    analyse()
    cut = banktasks("cases", "list", "--limit", "2").output.splitlines()
    assert len(cut) == 1 + 2 + 1 and "the newest 2 only: there are more" in cut[-1]
    whole = banktasks("cases", "list", "--limit", "3").output
    assert "there are more" not in whole
    assert len(json.loads(banktasks("cases", "list", "--limit", "2", "--json").output)) == 2
