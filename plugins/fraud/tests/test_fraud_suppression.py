"""Suppressions: suppressed hits are stored and counted (no case, no hook, no score), expire,
can be lifted, are audited; and `banktasks fraud suppress|unsuppress|suppressions`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from banktasks_testing import fake_plugin
from core.db import utcnow
from core.models import Transaction, TransactionKind
from plugins.fraud.audit import audit_trail
from plugins.fraud.cases import account_scores
from plugins.fraud.models import FraudCase, FraudSuppression
from plugins.fraud.suppression import (
    SuppressionError,
    apply_suppressions,
    create_suppression,
    latest_until,
    lift_suppression,
    list_suppressions,
)

from .helpers import T0, Bank, analyse, commands

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@pytest.fixture
def heard() -> dict[str, list[Any]]:
    return {"cases": [], "alerts": []}


def _app(make_app: Any, heard: dict[str, list[Any]], **kwargs: Any) -> Any:
    listener = fake_plugin(
        "listener",
        on_fraud_case_opened=lambda case, alert: heard["cases"].append(case),
        on_fraud_alert=lambda alert: heard["alerts"].append(alert),
    )
    return make_app("fraud", listener, **kwargs)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, make_app: Any, heard: dict[str, list[Any]]) -> Any:
    if request.param == "sqlite":
        return _app(make_app, heard)
    return _app(make_app, heard, database_url=request.getfixturevalue("pg_database_url"))


@pytest.fixture
def sqlite_app(make_app: Any, heard: dict[str, list[Any]]) -> Any:
    return _app(make_app, heard)


def paid_to(db: Any, account_id: int, amount: str, at: datetime, counterparty: str) -> int:
    with db.session() as session:
        row = Transaction(
            account_id=account_id,
            amount=Decimal(amount),
            kind=TransactionKind.payment,
            counterparty=counterparty,
            created_at=at,
            updated_at=at,
        )
        session.add(row)
        session.flush()
        return row.id


def count_cases(db: Any) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(FraudCase)))


def test_suppressed_by_account_and_by_counterparty(app, heard):
    db = app.runtime.db
    bank = Bank(db)
    quiet, payer, loud = bank.account(), bank.account(), bank.account()
    by_account = create_suppression(
        "large_transaction", utcnow() + timedelta(days=7), "known trader", "ann", account_id=quiet
    )
    by_name = create_suppression(
        "large_transaction", utcnow() + timedelta(days=7), "payroll", "ann", counterparty="ACME"
    )
    bank.tx(quiet, "15000.00", T0)
    paid_to(db, payer, "15000.00", T0, "ACME")
    other = paid_to(db, payer, "15000.00", T0 + MINUTE, "ACME Ltd")  # not that name
    bank.tx(loud, "15000.00", T0)

    result = analyse()
    assert result["alerts_created"] == 4
    assert (result["suppressed"], result["suppressed_by_rule"]) == (2, {"large_transaction": 2})
    assert result["cases_opened"] == 2 and len(heard["cases"]) == 2
    assert {a.account_id for a in heard["alerts"]} == {payer, loud}
    alerts = bank.alerts()
    suppressed = {a.account_id: a for a in alerts if a.status == "suppressed"}
    assert {k: v.suppression_id for k, v in suppressed.items()} == {
        quiet: by_account.id,
        payer: by_name.id,
    }
    assert all(a.case_id is None for a in suppressed.values())
    assert [a.transaction_id for a in alerts if a.account_id == payer and a.case_id] == [other]
    with db.session() as session:
        assert quiet not in account_scores(session)
    hits = {r["id"]: r["hits"] for r in list_suppressions()}
    assert hits == {by_account.id: 1, by_name.id: 1}


def test_an_expired_suppression_no_longer_applies(sqlite_app, monkeypatch):
    db = sqlite_app.runtime.db
    bank = Bank(db)
    account = bank.account()
    create_suppression(
        "large_transaction", utcnow() + timedelta(hours=1), "one hour", "ann", account_id=account
    )
    bank.tx(account, "15000.00", T0)
    later = utcnow() + timedelta(hours=2)
    monkeypatch.setattr("plugins.fraud.engine.utcnow", lambda: later)
    result = analyse()
    assert (result["suppressed"], result["cases_opened"]) == (0, 1)
    assert [a.status for a in bank.alerts()] == ["open"]
    assert list_suppressions(now=later) == []
    assert [r["active"] for r in list_suppressions(include_inactive=True, now=later)] == [False]


def test_lifting_a_suppression(sqlite_app, heard):
    db = sqlite_app.runtime.db
    bank = Bank(db)
    account = bank.account()
    row = create_suppression(
        "large_transaction", utcnow() + timedelta(days=1), "checking", "ann", account_id=account
    )
    bank.tx(account, "15000.00", T0)
    assert analyse()["suppressed"] == 1
    lifted = lift_suppression(row.id, "bob")
    assert (lifted.lifted_by, lifted.lifted_at is not None) == ("bob", True)
    bank.tx(account, "15000.00", T0 + MINUTE)
    result = analyse()  # the first hit stays suppressed (final); the new one alerts
    assert (result["alerts_created"], result["suppressed"], result["cases_opened"]) == (1, 0, 1)
    assert [a.status for a in bank.alerts()] == ["suppressed", "open"]
    with pytest.raises(SuppressionError, match=f"#{row.id} was already lifted"):
        lift_suppression(row.id, "bob")
    trail = audit_trail("suppression", row.id)
    assert [(r["action"], r["actor"]) for r in trail] == [
        ("suppression.created", "ann"),
        ("suppression.lifted", "bob"),
    ]
    assert trail[0]["details"]["reason"] == "checking"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rule": "nope"}, r"unknown fraud rule\(s\) nope; rules that exist: "),
        ({"reason": "  "}, "the reason is empty"),
        ({"until": datetime(2020, 1, 1)}, "is not in the future"),
        ({"counterparty": "ACME"}, "exactly one of an account id or a counterparty"),
        ({"account_id": None}, "exactly one of an account id or a counterparty"),
    ],
)
def test_bad_suppressions_are_refused(sqlite_app, kwargs, message):
    arguments: dict[str, Any] = {
        "rule": "large_transaction",
        "until": utcnow() + timedelta(days=1),
        "reason": "why",
        "actor": "ann",
        "account_id": 1,
    }
    arguments.update(kwargs)
    with pytest.raises(SuppressionError, match=message):
        create_suppression(**arguments)
    assert list_suppressions(include_inactive=True) == []
    assert audit_trail() == []


# -- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def banktasks(sqlite_app):
    return commands(sqlite_app)


def test_suppression_commands(sqlite_app, banktasks):
    bank = Bank(sqlite_app.runtime.db)
    account = bank.account()
    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    out = banktasks(
        "fraud", "suppress", "large_transaction", "--account", str(account), "--until", until,
        "--reason", "known trader", "--by", "ann",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "suppression #1: large_transaction for account" in out.output
    bank.tx(account, "15000.00", T0)
    analyse()
    rows = json.loads(banktasks("fraud", "suppressions", "--json").output)
    assert [(r["id"], r["hits"], r["created_by"]) for r in rows] == [(1, 1, "ann")]
    assert "known trader" in banktasks("fraud", "suppressions").output
    listed = json.loads(banktasks("alerts", "list", "--status", "suppressed", "--json").output)
    assert [(a["status"], a["suppression_id"]) for a in listed] == [("suppressed", 1)]

    out = banktasks("fraud", "unsuppress", "1", "--by", "bob")
    assert out.exit_code == 0 and "suppression #1 lifted" in out.output
    assert "no fraud suppressions" in banktasks("fraud", "suppressions").output
    assert "(lifted)" in banktasks("fraud", "suppressions", "--all").output
    again = banktasks("fraud", "unsuppress", "1")
    assert again.exit_code == 2 and "already lifted" in again.output
    audit = json.loads(banktasks("fraud", "audit", "--object", "suppression", "--json").output)
    assert [r["action"] for r in audit] == ["suppression.created", "suppression.lifted"]


LT = ["large_transaction", "--account", "1"]
SOON = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["nope", "--account", "1", "--until", "2999-01-01", "--reason", "x"],
            "unknown fraud rule",
        ),
        ([*LT, "--until", "2001-01-01", "--reason", "x"], "not in the future"),
        ([*LT, "--until", "soon", "--reason", "x"], "is not a date"),
        ([*LT, "--until", "2999-01-01", "--reason", " "], "the reason is empty"),
        (["large_transaction", "--until", "2999-01-01", "--reason", "x"], "exactly one of"),
        (
            ["large_transaction", "--account", "99999", "--until", SOON, "--reason", "x"],
            "account 99999 does not exist",
        ),
        (
            ["large_transaction", "--account", "-5", "--until", SOON, "--reason", "x"],
            "account id -5 is not valid",
        ),
        (
            [
                "large_transaction",
                "--counterparty",
                "ACME",
                "--until",
                "2999-01-01",
                "--reason",
                "x",
            ],
            "at most 365 days (FRAUD_SUPPRESSION_MAX_DAYS)",
        ),
    ],
)
def test_bad_suppress_commands_exit_2_and_write_nothing(sqlite_app, banktasks, args, message):
    out = banktasks("fraud", "suppress", *args)
    assert out.exit_code == 2
    assert message in out.output
    with sqlite_app.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(FraudSuppression)) == 0
    assert audit_trail() == []


# -- which alerts a counterparty suppression matches ------------------------------------------


def paid(db: Any, account_id: int, parties: list[str], start: datetime = T0) -> list[int]:
    """One 100.00 payment to each of `parties`, an hour apart."""
    return [paid_to(db, account_id, "100.00", start + i * HOUR, p) for i, p in enumerate(parties)]


@pytest.fixture
def fan_app(make_app: Any, heard: dict[str, list[Any]]) -> Any:
    fraud = {"rules": "fan_in_out", "fan_min_counterparties": "3"}
    return _app(make_app, heard, plugin_settings={"fraud": fraud})


def test_a_counterparty_of_a_burst_is_matched_through_the_evidence(fan_app):
    db = fan_app.runtime.db
    bank = Bank(db)
    hushed, loud = bank.account(), bank.account()
    row = create_suppression(
        "fan_in_out",
        utcnow() + timedelta(days=7),
        "our payroll agent",
        "ann",
        counterparty=" BETA ",
    )
    assert row.counterparty == "beta"  # stored normalised
    assert audit_trail("suppression", row.id)[0]["details"]["counterparty_given"] == "BETA"
    first = paid(db, hushed, ["Alpha", "  beta ", "Gamma"])[0]  # beta is not the first row
    paid(db, loud, ["Delta", "Epsilon", "Zeta"])
    result = analyse()
    assert (result["alerts_created"], result["suppressed"]) == (2, 1)
    alerts = {a.account_id: a for a in bank.alerts("fan_in_out")}
    assert alerts[hushed].transaction_id == first
    assert "beta" in alerts[hushed].evidence["counterparties"]
    assert (alerts[hushed].status, alerts[hushed].suppression_id) == ("suppressed", row.id)
    assert (alerts[loud].status, alerts[loud].suppression_id) == ("open", None)


def test_the_transaction_counterparty_is_compared_trimmed_and_case_insensitively(sqlite_app):
    db = sqlite_app.runtime.db
    bank = Bank(db)
    payer = bank.account()
    row = create_suppression(
        "large_transaction", utcnow() + timedelta(days=7), "payroll", "ann", counterparty="acme ltd"
    )
    paid_to(db, payer, "15000.00", T0, "  ACME Ltd ")
    assert analyse()["suppressed"] == 1
    assert [a.suppression_id for a in bank.alerts()] == [row.id]


def test_apply_suppressions_reads_evidence_counterparties_and_takes_the_lowest_id():
    def suppression(id: int, account_id: int | None = None, name: str | None = None) -> Any:
        return FraudSuppression(id=id, rule="r", account_id=account_id, counterparty=name)

    def row(account: int, tx: int | None, evidence: Any) -> dict[str, Any]:
        return {"rule": "r", "account_id": account, "transaction_id": tx, "evidence": evidence}

    rows = [
        row(1, 10, {"counterparties": ["X", " Mule Co "]}),  # by its evidence
        row(2, 20, {}),  # by its transaction's counterparty
        row(3, 30, {"counterparties": "mule co"}),  # not a list: not read
        row(4, None, None),  # by its account
        row(5, 50, {"counterparties": ["other"]}),  # by its account and a name: lowest id
        {**row(1, 10, {"counterparties": ["mule co"]}), "rule": "s"},  # another rule's
    ]
    suppressions = [
        suppression(7, name="mule co"),
        suppression(9, account_id=4),
        suppression(8, name="ACME"),
        suppression(3, name="other"),
        suppression(2, account_id=5),
    ]
    apply_suppressions(rows, suppressions, {20: "  Mule CO", 30: "nobody"})
    assert [r.get("suppression_id") for r in rows] == [7, 7, None, 9, 2, None]
    assert [r.get("status") for r in rows][2] is None


# -- what a suppression may be ------------------------------------------------------------------


def test_until_is_bounded_by_fraud_suppression_max_days(make_app, heard):
    _app(make_app, heard, plugin_settings={"fraud": {"suppression_max_days": 10}})
    now = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)
    latest = latest_until(now, 10)
    assert latest == datetime(2026, 1, 21, tzinfo=UTC)  # the end of the 20th
    arguments: dict[str, Any] = {"reason": "r", "actor": "ann", "now": now}
    with pytest.raises(SuppressionError, match=r"at most 10 days \(FRAUD_SUPPRESSION_MAX_DAYS\)"):
        create_suppression(
            "large_transaction", latest + timedelta(microseconds=1), counterparty="A", **arguments
        )
    assert create_suppression("large_transaction", latest, counterparty="A", **arguments).id


def test_a_duplicate_of_an_active_suppression_is_refused(sqlite_app):
    bank = Bank(sqlite_app.runtime.db)
    account = bank.account()
    week = utcnow() + timedelta(days=7)
    first = create_suppression("large_transaction", week, "r", "ann", account_id=account)
    with pytest.raises(SuppressionError, match=f"#{first.id} already .* which covers"):
        create_suppression("large_transaction", week - HOUR, "r", "bob", account_id=account)
    with pytest.raises(SuppressionError, match="lift it first with `banktasks fraud unsuppress"):
        create_suppression("large_transaction", week + HOUR, "r", "bob", account_id=account)
    name = create_suppression("large_transaction", week, "r", "ann", counterparty="ACME")
    with pytest.raises(SuppressionError, match=f"#{name.id} already suppresses"):
        create_suppression("large_transaction", week, "r", "bob", counterparty="  acme ")
    # another rule, another target, or once the first is lifted: fine
    create_suppression("velocity", week, "r", "ann", account_id=account)
    create_suppression("large_transaction", week, "r", "ann", counterparty="ACME Ltd")
    lift_suppression(first.id, "ann")
    create_suppression("large_transaction", week + HOUR, "r", "ann", account_id=account)
    created = [r for r in audit_trail() if r["action"] == "suppression.created"]
    assert len(created) == len(list_suppressions(include_inactive=True)) == 5


def test_an_expired_suppression_is_no_duplicate(sqlite_app):
    account = Bank(sqlite_app.runtime.db).account()
    now = utcnow()
    create_suppression("large_transaction", now + HOUR, "r", "ann", account_id=account, now=now)
    later = now + 2 * HOUR
    create_suppression("large_transaction", later + HOUR, "r", "ann", account_id=account, now=later)


def test_a_date_alone_means_the_end_of_that_day(sqlite_app, banktasks):
    account = Bank(sqlite_app.runtime.db).account()
    today = datetime.now(UTC).date()
    out = banktasks(
        "fraud", "suppress", "large_transaction", "--account", str(account),
        "--until", today.isoformat(), "--reason", "today only",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    assert f"until {end.isoformat()} (the end of {today.isoformat()})" in out.output
    (row,) = list_suppressions()
    assert row["until"] == end.isoformat()
    assert "END of that day" in banktasks("fraud", "suppress", "--help").output


def test_the_duplicate_and_unknown_id_commands_say_what_to_do(sqlite_app, banktasks):
    account = Bank(sqlite_app.runtime.db).account()
    args = ["--account", str(account), "--until", SOON, "--reason", "x"]
    assert banktasks("fraud", "suppress", "large_transaction", *args).exit_code == 0
    again = banktasks("fraud", "suppress", "large_transaction", *args)
    assert again.exit_code == 2
    assert "fraud suppression #1 already suppresses large_transaction" in again.output
    missing = banktasks("fraud", "unsuppress", "999")
    assert missing.exit_code == 2
    assert "#999 does not exist" in missing.output
    assert "banktasks fraud suppressions --all" in missing.output
