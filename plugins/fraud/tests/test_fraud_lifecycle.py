"""Alert lifecycle (open → investigating → resolved | false_positive) and `banktasks alerts`."""

from __future__ import annotations

import json
from datetime import timedelta

import click
import pytest
from click.testing import CliRunner

from plugins.fraud import (
    AlertNotFoundError,
    AlertTransitionError,
    change_status,
    investigate_alert,
    resolve_alert,
)

from .helpers import T0


@pytest.fixture
def alerts(bank, run):
    """Three alerts: large_transaction, velocity, structuring (in that id order)."""
    bank.tx(bank.account(), "15000.00", T0, kind="transfer")
    bank.burst(bank.account(), T0, 11, timedelta(minutes=1))
    bank.txs(bank.account(), [("9500.00", T0), ("9600.00", T0)], kind="deposit")
    run()
    found = {a.rule: a for a in bank.alerts()}
    return [found["large_transaction"], found["velocity"], found["structuring"]]


def test_open_investigating_resolved(alerts, bank):
    alert = alerts[0]
    assert alert.status == "open" and alert.resolved_at is None
    assert investigate_alert(alert.id).status == "investigating"
    assert bank.alerts()[0].resolved_at is None
    resolved = resolve_alert(alert.id)
    assert resolved.status == "resolved"
    assert resolved.resolved_at is not None
    assert bank.alerts()[0].status == "resolved"


def test_open_straight_to_false_positive(alerts):
    closed = resolve_alert(alerts[1].id, false_positive=True)
    assert (closed.status, closed.resolved_at is not None) == ("false_positive", True)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        (["resolved"], "investigating"),
        (["resolved"], "false_positive"),
        (["false_positive"], "resolved"),
        (["investigating"], "investigating"),
        (["investigating"], "open"),
        ([], "open"),
    ],
)
def test_invalid_transitions_are_refused(alerts, bank, path, target):
    alert_id = alerts[0].id
    for step in path:
        change_status(alert_id, step)
    before = bank.alerts()[0]
    with pytest.raises(AlertTransitionError, match=f"#{alert_id} is {before.status}; it cannot"):
        change_status(alert_id, target)
    after = bank.alerts()[0]
    assert (after.status, after.resolved_at) == (before.status, before.resolved_at)


def test_unknown_alert(fraud_app):
    with pytest.raises(AlertNotFoundError, match="fraud alert #999 does not exist"):
        resolve_alert(999)


def test_unknown_status_is_refused(alerts):
    with pytest.raises(ValueError, match="'closed' is not a valid AlertStatus"):
        change_status(alerts[0].id, "closed")


# -- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli(fraud_app):
    """A `banktasks`-like command group holding what fraud's `register_commands` adds."""
    group = click.Group("banktasks")
    fraud_app.runtime.hook.register_commands(cli=group)
    return group


@pytest.fixture
def banktasks(cli):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


def account_number(bank, account_id):
    from core.models import Account

    with bank.db.session() as session:
        return session.get(Account, account_id).number


def test_list_masks_account_numbers(alerts, bank, banktasks):
    result = banktasks("alerts", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4  # header + three alerts
    for alert in alerts:
        number = account_number(bank, alert.account_id)
        assert number not in result.output
        assert f"****{number[-4:]}" in result.output
    assert "large_transaction" in result.output and "velocity" in result.output


def test_list_json_filters_and_limit(alerts, bank, banktasks):
    rows = json.loads(banktasks("alerts", "list", "--json").output)
    assert [r["id"] for r in rows] == sorted((a.id for a in alerts), reverse=True)
    assert all(r["account"].startswith("****") and len(r["account"]) == 8 for r in rows)
    raw = banktasks("alerts", "list", "--json").output
    for alert in alerts:
        assert account_number(bank, alert.account_id) not in raw
    only = json.loads(banktasks("alerts", "list", "--rule", "velocity", "--json").output)
    assert [(r["rule"], r["evidence"]["count"]) for r in only] == [("velocity", 11)]
    assert len(json.loads(banktasks("alerts", "list", "--limit", "1", "--json").output)) == 1
    resolve_alert(alerts[0].id)
    still_open = json.loads(banktasks("alerts", "list", "--status", "open", "--json").output)
    assert sorted(r["id"] for r in still_open) == sorted(a.id for a in alerts[1:])
    assert json.loads(banktasks("alerts", "list", "--status", "resolved", "--json").output)[0][
        "resolved_at"
    ]


def test_list_refuses_an_unknown_status(cli):
    result = CliRunner().invoke(cli, ["alerts", "list", "--status", "closed"])
    assert result.exit_code == 2
    assert "'closed' is not one of 'open', 'investigating', 'resolved', 'false_positive'" in (
        result.output
    )


def test_empty_list(fraud_app, banktasks):
    assert banktasks("alerts", "list").output == "no fraud alerts\n"


def test_investigate_and_resolve_commands(alerts, bank, banktasks):
    alert = alerts[2]
    out = banktasks("alerts", "investigate", str(alert.id)).output
    assert (
        out == f"alert #{alert.id} (structuring, account {alert.account_id}) is now investigating\n"
    )
    out = banktasks("alerts", "resolve", str(alert.id), "--false-positive").output
    assert out.endswith("is now false_positive\n")
    shown = json.loads(banktasks("alerts", "show", str(alert.id)).output)
    assert shown["status"] == "false_positive" and shown["resolved_at"]
    assert shown["account"].startswith("****")


def test_commands_report_bad_moves_and_unknown_ids(alerts, banktasks, cli):
    alert_id = alerts[0].id
    banktasks("alerts", "resolve", str(alert_id))
    result = CliRunner().invoke(cli, ["alerts", "investigate", str(alert_id)])
    assert result.exit_code == 1
    assert f"fraud alert #{alert_id} is resolved; it cannot become investigating" in result.output
    result = CliRunner().invoke(cli, ["alerts", "resolve", "4242"])
    assert (result.exit_code, "fraud alert #4242 does not exist" in result.output) == (1, True)
    result = CliRunner().invoke(cli, ["alerts", "show", "4242"])
    assert result.exit_code == 1


def test_every_status_change_is_in_the_audit_trail_with_who_made_it(alerts, banktasks):
    from plugins.fraud.audit import audit_trail

    first, second = alerts[0].id, alerts[1].id
    assert banktasks("alerts", "investigate", str(first), "--by", "ann").exit_code == 0
    assert banktasks("alerts", "resolve", str(first), "--by", "bob").exit_code == 0
    resolve_alert(second, false_positive=True, actor="carol")
    refused = banktasks("alerts", "resolve", str(second), "--by", "dave")
    assert refused.exit_code != 0  # final already: nothing written
    trail = [(r["action"], r["actor"], r["object_id"]) for r in audit_trail("alert")]
    assert trail == [
        ("alert.investigating", "ann", first),
        ("alert.resolved", "bob", first),
        ("alert.false_positive", "carol", second),
    ]
