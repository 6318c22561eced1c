"""The back-test (plugins/fraud/backtest.py): the same hits as the analysis, nothing written,
no hook called, new / unchanged / no longer raised after a change of settings, clear
errors before anything runs, the command line, and the task through a real worker."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from banktasks_testing import fake_plugin, make_account, make_transactions, make_user, seed_data
from core import TaskArgumentError
from plugins.fraud import FraudAlert
from plugins.fraud.backtest import run_backtest
from plugins.fraud.models import FraudWatermark
from plugins.fraud.tasks import backtest_fraud_rules

from .helpers import T0, Bank, analyse

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
SINCE, UNTIL = T0 - 2 * DAY, T0 + 2 * DAY


def plant(bank: Bank) -> dict[str, Any]:
    """A large transaction of each size, a velocity burst and structured deposits."""
    payer = bank.account()
    ids = {
        amount: bank.tx(payer, amount, T0 + i * HOUR)
        for i, amount in enumerate(["6000.00", "12000.00", "20000.00"])
    }
    bank.burst(bank.account(), T0, 11, MINUTE)
    deposits = [("9500.00", T0), ("9600.00", T0 + HOUR)]
    ids.update(
        zip(["9500.00", "9600.00"], bank.txs(bank.account(), deposits, "deposit"), strict=True)
    )
    return ids


def stored_keys(bank: Bank) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for alert in bank.alerts():
        keys.setdefault(alert.rule, set()).add(alert.dedup_key)
    return keys


def by_rule(report: Any) -> dict[str, Any]:
    return {r.name: r for r in report.rules}


def counts(db: Any) -> tuple[int, int]:
    with db.session() as session:
        alerts = session.scalar(select(func.count()).select_from(FraudAlert))
        marks = session.scalar(select(func.count()).select_from(FraudWatermark))
    return alerts, marks


def test_hits_are_what_the_analysis_stores(bank):
    plant(bank)
    report = run_backtest(None, SINCE, UNTIL)
    assert [r.name for r in report.rules] == ["large_transaction", "structuring", "velocity"]
    assert all(r.new == r.keys and not r.unchanged for r in report.rules)

    analyse(SINCE, UNTIL)
    stored = stored_keys(bank)
    assert {r.name: set(r.keys) for r in report.rules} == stored
    assert report.rules[0].hits == 2
    again = run_backtest(None, SINCE, UNTIL)
    for result in again.rules:
        assert (result.new, result.no_longer_raised) == ([], [])
        assert set(result.unchanged) == stored[result.name]
    # The alerts record the settings hash the back-test reports.
    hashes = {a.rule: a.settings_hash for a in bank.alerts()}
    assert {r.name: r.settings_hash for r in again.rules} == hashes
    assert {r.name: r.version for r in again.rules} == {name: "1" for name in hashes}


def test_it_writes_nothing_and_calls_no_hook(make_app):
    seen: list[Any] = []
    app = make_app(
        "fraud", fake_plugin("recorder", on_fraud_alert=lambda alert: seen.append(alert))
    )
    bank = Bank(app.runtime.db)
    plant(bank)
    before = counts(app.runtime.db)
    report = run_backtest(None, SINCE, UNTIL, {"FRAUD_LARGE_AMOUNT": "100"})
    assert report.totals()["hits"] > 5
    assert counts(app.runtime.db) == before == (0, 0)
    assert seen == []
    analyse(SINCE, UNTIL)  # the recorder is listening: the analysis calls it
    assert seen
    stored = counts(app.runtime.db)
    run_backtest(None, SINCE, UNTIL, {"FRAUD_LARGE_AMOUNT": "100"})
    assert counts(app.runtime.db) == stored
    assert len(seen) == stored[0] - 1  # velocity's medium alert is below FRAUD_ALERT_MIN_SEVERITY


def test_a_changed_threshold_gives_new_and_no_longer_raised(bank):
    ids = plant(bank)
    analyse(SINCE, UNTIL)
    stored_hash = bank.alerts("large_transaction")[0].settings_hash

    lower = run_backtest(["large_transaction"], SINCE, UNTIL, {"FRAUD_LARGE_AMOUNT": "5000"})
    result = by_rule(lower)["large_transaction"]
    assert (result.hits, result.no_longer_raised) == (5, [])
    assert set(result.new) == {f"tx:{ids[a]}" for a in ("6000.00", "9500.00", "9600.00")}
    assert sorted(result.unchanged) == sorted(f"tx:{ids[a]}" for a in ("12000.00", "20000.00"))
    assert result.settings_hash != stored_hash

    higher = run_backtest(["large_transaction"], SINCE, UNTIL, {"fraud_large_amount": "15000"})
    result = by_rule(higher)["large_transaction"]
    assert higher.overrides == {"FRAUD_LARGE_AMOUNT": "15000"}
    assert (result.keys, result.new) == ([f"tx:{ids['20000.00']}"], [])
    assert result.no_longer_raised == [f"tx:{ids['12000.00']}"]
    summary = higher.as_dict()["rules"][0]
    assert (summary["hits"], summary["no_longer_raised"], summary["new"]) == (1, 1, 0)
    assert summary["no_longer_raised_sample"] == [f"tx:{ids['12000.00']}"]

    # A stored alert outside the window is not "no longer raised": its window did not run.
    later = run_backtest(
        ["large_transaction"], T0 + 90 * MINUTE, UNTIL, {"FRAUD_LARGE_AMOUNT": "15000"}
    )
    assert by_rule(later)["large_transaction"].no_longer_raised == []
    assert run_backtest(None, SINCE, UNTIL, compare=False).rules[0].new == []


def test_a_rule_that_is_off_by_default_runs_when_named(fraud_app):
    with fraud_app.runtime.db.session() as session:
        user = make_user(session)
        first, second = make_account(session, user), make_account(session, user)
        rows = [dict(amount="6000.00", kind="deposit", at=T0, channel="cash")]
        make_transactions(session, first, rows)
        crossing = make_transactions(session, second, [{**rows[0], "at": T0 + HOUR}])[0].id
        user_id = user.id
    assert "cash_threshold" not in {r.name for r in run_backtest(None, SINCE, UNTIL).rules}
    report = run_backtest(["cash_threshold"], SINCE, UNTIL)
    (result,) = report.rules
    assert (result.name, result.keys) == ("cash_threshold", [f"ctr:{user_id}:2024-05-01"])
    assert result.rows[0]["transaction_id"] == crossing
    higher = run_backtest(["cash_threshold"], SINCE, UNTIL, {"FRAUD_CTR_AMOUNT": "12000"})
    assert higher.rules[0].keys == []


def test_bad_arguments_are_refused_before_anything_runs(bank, monkeypatch):
    plant(bank)
    ran: list[str] = []
    monkeypatch.setattr(
        "plugins.fraud.builtin.LargeTransaction.find", lambda self, ctx: ran.append("x") or []
    )
    cases = [
        (dict(rules=["nope"]), "unknown fraud rule(s) nope; rules that exist: amount_deviation"),
        (dict(overrides={"FRAUD_NOPE": "1"}), "--set FRAUD_NOPE: not a setting of the fraud"),
        (dict(overrides={"LARGE_AMOUNT": "1"}), "settings: FRAUD_ALERT_MIN_SEVERITY"),
        (dict(overrides={"FRAUD_LARGE_AMOUNT": "lots"}), "FRAUD_LARGE_AMOUNT=lots: Input should"),
        (dict(overrides={"FRAUD_LARGE_AMOUNT": "1.001"}), "at most two decimal places"),
        (dict(overrides={"FRAUD_DORMANT_ACTIVITY_DAYS": "400"}), "must be less than"),
        (dict(overrides={"FRAUD_ENABLE_RULES": "nope"}), "FRAUD_ENABLE_RULES=nope: unknown"),
        (dict(since=UNTIL), "must be before until"),
        (dict(until=SINCE - DAY), "must be before until"),
    ]
    for change, message in cases:
        arguments = {"rules": None, "since": SINCE, "until": UNTIL, **change}
        with pytest.raises(TaskArgumentError, match=r"^fraud\.backtest_fraud_rules: ") as caught:
            run_backtest(**arguments)
        assert message in str(caught.value)
        with pytest.raises(TaskArgumentError):  # the task's check refuses it before sending
            backtest_fraud_rules.delay(**arguments)
    assert ran == []
    assert counts(bank.db) == (0, 0)


def test_the_task_in_process(bank):
    ids = plant(bank)
    result = backtest_fraud_rules(
        since=SINCE.isoformat(),
        until=UNTIL.replace(tzinfo=None).isoformat(),  # naive: UTC
        rules=["large_transaction"],
        overrides={"FRAUD_LARGE_AMOUNT": "15000"},
    )
    assert result["until"] == UNTIL.isoformat()
    assert result["rules"][0]["keys"] == [f"tx:{ids['20000.00']}"]
    assert json.loads(json.dumps(result)) == result
    assert backtest_fraud_rules.example_kwargs().keys() == {"since", "until"}


# -- banktasks fraud backtest --------------------------------------------------------------


@pytest.fixture
def banktasks(fraud_app):
    group = click.Group("banktasks")
    fraud_app.runtime.hook.register_commands(cli=group)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(group, ["fraud", "backtest", *args], catch_exceptions=False)

    return invoke


def test_the_command_prints_a_table_and_json(bank, banktasks):
    plant(bank)
    analyse(SINCE, UNTIL)
    window = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat()]
    result = banktasks(*window, "--set", "FRAUD_LARGE_AMOUNT=15000")
    assert result.exit_code == 0, result.output
    # (the tests' log lines go to stdout; the command's to stderr)
    lines = result.stdout[result.stdout.index("back-test of") :].splitlines()
    assert lines[1] == "with FRAUD_LARGE_AMOUNT=15000"
    assert lines[2].split()[:7] == ["rule", "hits", "new", "unchanged", "no", "longer", "seconds"]
    assert lines[3].split()[:5] == ["large_transaction", "1", "0", "1", "1"]
    assert lines[4].split()[:5] == ["structuring", "0", "0", "0", "1"]  # 9,500 is below the band
    assert lines[-1].split()[:5] == ["total", "2", "0", "2", "2"]

    result = banktasks("velocity", *window, "--json")
    report = json.loads(result.stdout[result.stdout.index("{\n") :])
    assert [r["rule"] for r in report["rules"]] == ["velocity"]
    assert report["totals"]["unchanged"] == 1
    assert counts(bank.db)[0] == 4  # what the analysis stored, no more


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown fraud rule(s) nope"),
        (["--set", "FRAUD_LARGE_AMOUNT"], "expected NAME=VALUE"),
        (["--set", "FRAUD_LARGE_AMOUNT=-1"], "FRAUD_LARGE_AMOUNT=-1: Input should be greater"),
        (["--since", "yesterday"], "--since 'yesterday': expected an ISO 8601 time"),
        (["--since", "2024-05-03"], "must be before until"),
    ],
)
def test_the_command_reports_errors_in_one_line(banktasks, args, message):
    window = ["--since", "2024-05-01", "--until", "2024-05-02"]
    result = banktasks(*window, *args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr


# -- through a real worker -----------------------------------------------------------------

NOW = T0 + 30 * DAY


def _through_a_worker(e2e: Any, dialect: str) -> None:
    app = e2e.app()
    assert app.runtime.db.dialect == dialect
    summary = seed_data(app.runtime.db, users=20, transactions=600, seed_value=5, now=NOW)
    e2e.start_worker(queues=["fraud"])
    window = {"since": (NOW - 31 * DAY).isoformat(), "until": NOW.isoformat()}
    task = app.tasks["fraud.backtest_fraud_rules"]
    report = task.delay(**window, overrides={"FRAUD_LARGE_AMOUNT": "1000000"}).get(timeout=60)
    rules = {r["rule"]: r for r in report["rules"]}
    assert set(rules) == {"large_transaction", "structuring", "velocity"}
    assert rules["large_transaction"]["hits"] == 0
    assert rules["velocity"]["hits"] == len(summary.velocity_accounts) > 0
    assert report["totals"]["new"] == report["totals"]["hits"]
    with app.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(FraudAlert)) == 0
    with pytest.raises(TaskArgumentError, match="unknown fraud rule"):
        task.delay(**window, rules=["nope"])


@pytest.mark.e2e
def test_the_task_through_a_real_worker(e2e):
    e2e.set(BANKTASKS_PLUGINS="fraud")
    _through_a_worker(e2e, "sqlite")


@pytest.mark.e2e
@pytest.mark.postgres
def test_the_task_through_a_real_worker_on_postgresql(e2e, pg_database_url):
    e2e.set(BANKTASKS_PLUGINS="fraud", DATABASE_URL=pg_database_url)
    _through_a_worker(e2e, "postgresql")


def test_a_pattern_completed_after_until_is_not_no_longer_raised(make_app):
    """pass_through's alert points at the deposit; an outflow up to 48 hours later
    completes it. A deposit just before `until` completed after it belongs to the next
    window, not to this one."""
    settings = {"enable_rules": "pass_through"}
    bank = Bank(make_app("fraud", plugin_settings={"fraud": settings}).runtime.db)
    early, late = bank.account(), bank.account()
    deposit = bank.tx(early, "10000.00", T0 - 3 * DAY, "deposit")
    bank.tx(early, "9000.00", T0 - 3 * DAY + HOUR, "withdrawal")
    bank.tx(late, "10000.00", T0 - HOUR, "deposit")
    bank.tx(late, "9000.00", T0 + HOUR, "withdrawal")
    analyse(T0 - 5 * DAY, T0 + 5 * DAY)
    assert len(bank.alerts("pass_through")) == 2

    window = (["pass_through"], T0 - 4 * DAY, T0)
    (same,) = run_backtest(*window).rules
    assert (same.keys, same.unchanged, same.no_longer_raised) == ([f"tx:{deposit}"],) * 2 + ([],)
    (stricter,) = run_backtest(*window, {"FRAUD_PASS_THROUGH_PERCENT": "95"}).rules
    assert (stricter.keys, stricter.no_longer_raised) == ([], [f"tx:{deposit}"])
