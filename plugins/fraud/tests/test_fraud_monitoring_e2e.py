"""Transaction monitoring end to end, on SQLite and PostgreSQL: planted typologies analysed by a
real worker, rule versions and settings hashes on the alerts, one case per customer, a
suppression, the back-test as a task, casework and the audit trail through the `banktasks`
command, and `fraud evaluate` finding every planted instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from banktasks_testing import seed_data
from plugins.fraud.bankdata import account_owners
from plugins.fraud.engine import active_rules
from plugins.fraud.models import FraudAlert, FraudCase

NOW = datetime(2024, 6, 1, tzinfo=UTC)
SINCE = NOW - timedelta(days=31)
WINDOW = {"since": SINCE.isoformat(), "until": NOW.isoformat()}
TYPOLOGIES = "cash_threshold,amount_deviation,fan_in_out,pass_through,dormant_reactivation"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def monitoring(request: pytest.FixtureRequest, e2e: Any) -> Any:
    if request.param == "postgresql":
        e2e.set(DATABASE_URL=request.getfixturevalue("pg_database_url"))
    e2e.set(BANKTASKS_PLUGINS="fraud", FRAUD_ENABLE_RULES=TYPOLOGIES)
    return e2e


def banktasks(e2e: Any, *args: str) -> Any:
    """Run the `banktasks` command in a process of its own, with the workers' environment;
    its JSON output parsed, or the failed process' stderr in the assertion."""
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env={**os.environ, **e2e.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"banktasks {' '.join(args)}: {proc.stderr}"
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


@pytest.mark.e2e
def test_monitoring_through_a_worker_and_the_command_line(monitoring: Any) -> None:
    e2e = monitoring
    app = e2e.app()
    db = app.runtime.db
    seed_data(db, users=40, transactions=1500, seed_value=11, now=NOW)
    truth_file = e2e.tmp / "truth.json"
    banktasks(e2e, "fraud", "plant", "--per-typology", "2", "--truth", str(truth_file), "--json")
    truth = json.loads(truth_file.read_text())
    planted_rules = {instance["rule"] for instance in truth["instances"]}
    assert planted_rules >= set(TYPOLOGIES.split(","))

    # a known false positive, snoozed before the analysis: its hit is stored as suppressed
    hushed = next(i for i in truth["instances"] if i["rule"] == "large_transaction")
    hushed_account = hushed["account_ids"][0]
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    snooze = ["--account", str(hushed_account), "--until", until, "--by", "maria"]
    banktasks(e2e, "fraud", "suppress", "large_transaction", *snooze, "--reason", "payroll")

    e2e.start_worker()
    result = app.tasks["fraud.analyze_fraud_patterns"].delay(**WINDOW).get(timeout=120)
    assert result["suppressed_by_rule"] == {"large_transaction": 1}
    assert set(result["by_rule"]) >= planted_rules

    # versions: every alert records its rule's version and the hash of the settings it ran with
    expected = {
        active.rule.name: (active.rule.version, active.settings_hash)
        for active in active_rules(app.runtime, app.runtime.settings_for("fraud"))
    }
    with db.session() as session:
        alerts = session.scalars(select(FraudAlert)).all()
        cases = session.scalars(select(FraudCase)).all()
        owners = account_owners(session, {a.account_id for a in alerts})
    assert len(alerts) == result["alerts_created"] > len(truth["instances"])
    assert {(a.rule_version, a.settings_hash) == expected[a.rule] for a in alerts} == {True}

    # cases: one open case per customer with an unsuppressed alert, holding all of them
    (suppressed,) = [a for a in alerts if a.status == "suppressed"]
    assert (suppressed.account_id, suppressed.case_id) == (hushed_account, None)
    live = [a for a in alerts if a.status == "open"]
    assert len(live) == len(alerts) - 1
    case_of_user = {case.user_id: case.id for case in cases}
    assert len(cases) == len(case_of_user) == result["cases_opened"]
    assert set(case_of_user) == {owners[a.account_id] for a in live}
    assert {a.case_id == case_of_user[owners[a.account_id]] for a in live} == {True}

    # the back-test through the worker: the same hits, nothing written; then a higher limit
    backtest = app.tasks["fraud.backtest_fraud_rules"]
    same = backtest.delay(**WINDOW).get(timeout=120)
    by_rule = {rule["rule"]: rule for rule in same["rules"]}
    assert sum(rule["hits"] for rule in same["rules"]) == len(alerts)
    assert {(r["new"], r["no_longer_raised"]) for r in by_rule.values()} == {(0, 0)}
    higher = backtest.delay(
        **WINDOW, rules=["large_transaction"], overrides={"FRAUD_LARGE_AMOUNT": "1000000"}
    ).get(timeout=120)
    stored_large = sum(1 for a in alerts if a.rule == "large_transaction")
    ((large,),) = [higher["rules"]]
    assert (large["hits"], large["no_longer_raised"]) == (0, stored_large)
    with db.session() as session:
        assert len(session.scalars(select(FraudAlert)).all()) == len(alerts)

    # casework through the command line, every change in the audit trail
    listed = banktasks(e2e, "cases", "list", "--json")
    assert sorted(row["id"] for row in listed) == sorted(case_of_user.values())
    case_id = listed[0]["id"]
    banktasks(e2e, "cases", "assign", str(case_id), "--to", "alice", "--by", "bob")
    closing = ["--resolution", "false_positive", "--note", "salary advance", "--by", "alice"]
    banktasks(e2e, "cases", "close", str(case_id), *closing)
    shown = banktasks(e2e, "cases", "show", str(case_id), "--json")
    assert (shown["status"], shown["assignee"], shown["resolution"]) == (
        "closed",
        "alice",
        "false_positive",
    )
    assert {alert["status"] for alert in shown["alerts"]} == {"false_positive"}
    audit = banktasks(e2e, "fraud", "audit", "--json")
    actions = [(row["action"], row["actor"]) for row in audit]
    assert actions.count(("case.opened", "system")) == len(cases)
    assert ("suppression.created", "maria") in actions
    assert ("case.assigned", "bob") in actions and ("case.closed", "alice") in actions

    # measured quality: every planted instance found
    quality = banktasks(e2e, "fraud", "evaluate", "--truth", str(truth_file), "--json")
    recall = {row["rule"]: row["recall"] for row in quality["rules"] if row["planted"]}
    assert set(recall) == planted_rules and set(recall.values()) == {1.0}
