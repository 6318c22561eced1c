"""Rule selection, third-party rules, on_fraud_alert, and settings validation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import Field
from sqlalchemy import BigInteger, select, type_coerce

from banktasks_testing import fake_plugin
from core import CommaList, ConfigError, PluginSettings, current
from core.models import Account, Transaction
from plugins.fraud import Finding, FraudAlert, FraudSettings, Rule, RuleContext
from plugins.fraud.builtin import Velocity

from .helpers import T0, Bank, analyse

MINUTE = timedelta(minutes=1)
BUILTIN = ["large_transaction", "structuring", "velocity"]


def plant_one_of_each(bank):
    bank.tx(bank.account(), "15000.00", T0, kind="transfer")  # high
    bank.burst(bank.account(), T0, 11, MINUTE)  # medium
    bank.txs(bank.account(), [("9500.00", T0), ("9600.00", T0 + MINUTE)], kind="deposit")  # high
    bank.txs(
        bank.account(), [("9100.00", T0 + timedelta(hours=h)) for h in (0, 1, 2)], kind="deposit"
    )  # critical


# -- FRAUD_RULES / FRAUD_DISABLE_RULES ----------------------------------------------------


def test_allow_list(bank_with):
    bank = bank_with(FRAUD_RULES="velocity")
    plant_one_of_each(bank)
    assert analyse()["by_rule"] == {"velocity": 1}
    assert {a.rule for a in bank.alerts()} == {"velocity"}


def test_deny_list(bank_with):
    bank = bank_with(FRAUD_DISABLE_RULES="velocity, structuring")
    plant_one_of_each(bank)
    assert analyse()["by_rule"] == {"large_transaction": 1}


def test_deny_wins_over_allow(bank_with):
    bank_with(FRAUD_RULES="velocity,structuring", FRAUD_DISABLE_RULES="structuring")
    assert analyse()["by_rule"] == {"velocity": 0}


@pytest.mark.parametrize("setting", ["FRAUD_RULES", "FRAUD_ENABLE_RULES", "FRAUD_DISABLE_RULES"])
def test_unknown_rule_names_stop_start_up(bank_with, setting):
    with pytest.raises(ConfigError) as info:
        bank_with(**{setting: "velocity,velocty"})
    assert str(info.value) == (
        f"{setting}=velocity,velocty: unknown fraud rule(s) velocty; "
        "rules that exist: amount_deviation, cash_threshold, dormant_reactivation, fan_in_out, "
        "large_transaction, pass_through, structuring, velocity"
    )


# -- a third-party rule -------------------------------------------------------------------


class RoundAmounts:
    """Flags transactions of an exact multiple of 1000 (a toy third-party rule)."""

    name = "round_amount"
    version = "1"
    severity = "low"

    def find(self, ctx: RuleContext):
        tx = Transaction.__table__
        cents = type_coerce(tx.c.amount_minor, BigInteger)  # stored form: integer cents
        rows = ctx.session.execute(
            select(tx.c.id, tx.c.account_id, Transaction.amount).where(
                Transaction.created_at >= ctx.since,
                Transaction.created_at < ctx.until,
                cents % 100_000 == 0,
            )
        )
        for tid, account_id, amount in rows:
            yield Finding(account_id, tid, score=1.0, evidence={"amount": amount, "at": ctx.since})


def test_a_third_party_rule_is_registered_through_the_same_hook(make_app):
    rule = RoundAmounts()
    assert isinstance(rule, Rule)
    acme = fake_plugin("acme_rules", register_fraud_rules=lambda: [rule])
    bank = Bank(make_app("fraud", acme).runtime.db)
    account = bank.account()
    tid = bank.tx(account, "3000.00", T0)
    bank.tx(account, "3000.01", T0)
    result = analyse()
    assert result["by_rule"] == {**dict.fromkeys(BUILTIN, 0), "round_amount": 1}
    (alert,) = bank.alerts("round_amount")
    assert (alert.transaction_id, alert.severity, alert.dedup_key) == (tid, "low", f"tx:{tid}")
    # Decimals and datetimes in evidence are stored JSON-safe.
    assert alert.evidence == {"amount": "3000.00", "at": "2024-04-29T10:30:00Z"}
    assert analyse()["alerts_created"] == 0


def test_third_party_rules_can_be_picked_by_name(make_app, monkeypatch):
    monkeypatch.setenv("FRAUD_RULES", "round_amount")
    acme = fake_plugin("acme_rules", register_fraud_rules=lambda: [RoundAmounts()])
    make_app("fraud", acme)
    assert analyse()["by_rule"] == {"round_amount": 0}


# -- a rule gets its own plugin's settings -------------------------------------------------


class SanctionsSettings(PluginSettings):
    """The settings of a third-party `sanctions` plugin (`SANCTIONS_*`)."""

    listed_accounts: CommaList = Field(None, description="account numbers on the list")
    min_amount: Decimal = Field(Decimal("100"), description="smaller payments are ignored")


class ListedAccounts:
    """Payments of at least SANCTIONS_MIN_AMOUNT by a listed account (a third-party rule)."""

    name = "sanctioned_account"
    version = "1"
    severity = "critical"

    def __init__(self):
        self.contexts = []

    def find(self, ctx: RuleContext):
        self.contexts.append(ctx)
        rows = ctx.session.execute(
            select(Transaction.id, Transaction.account_id, Transaction.amount)
            .join(Account, Account.id == Transaction.account_id)
            .where(
                Transaction.created_at >= ctx.since,
                Transaction.created_at < ctx.until,
                Account.number.in_(ctx.settings.listed_accounts or []),
                Transaction.amount >= ctx.settings.min_amount,
            )
        )
        for tid, account_id, amount in rows:
            line = ctx.fraud_settings.large_amount
            yield Finding(account_id, tid, score=float(amount / line), evidence={"line": line})


def test_a_rule_gets_the_settings_of_the_plugin_that_registered_it(make_app):
    rule = ListedAccounts()
    module = fake_plugin(
        "sanctions",
        register_settings=lambda: ("sanctions", SanctionsSettings),
        register_fraud_rules=lambda: [rule],
    )
    app = make_app(
        "fraud",
        ("sanctions", module),
        plugin_settings={"sanctions": {"listed_accounts": "XX-1, XX-2", "min_amount": "500"}},
    )
    bank = Bank(app.runtime.db)
    listed, other = bank.account(number="XX-2"), bank.account()
    bank.tx(listed, "499.99", T0)
    flagged = bank.tx(listed, "500.00", T0)
    bank.tx(other, "5000.00", T0)

    result = analyse()
    assert result["by_rule"]["sanctioned_account"] == 1
    (ctx,) = rule.contexts
    assert isinstance(ctx.settings, SanctionsSettings)
    assert ctx.settings.min_amount == Decimal("500")
    assert isinstance(ctx.fraud_settings, FraudSettings)
    assert ctx.fraud_settings is app.runtime.settings_for("fraud")
    (alert,) = bank.alerts("sanctioned_account")
    assert (alert.transaction_id, alert.severity) == (flagged, "critical")
    assert alert.evidence == {"line": "10000"}


@dataclass
class Hit:
    """A finding of a rule that does not import plugins.fraud: plain data, Finding's shape."""

    account_id: int
    transaction_id: int | None
    score: float
    evidence: dict[str, object]


class PlainRule:
    name = "plain_round"
    version = "1"
    severity = "medium"

    def find(self, ctx):
        rows = ctx.session.execute(
            select(Transaction.id, Transaction.account_id).where(
                Transaction.created_at >= ctx.since,
                Transaction.created_at < ctx.until,
                Transaction.amount == Decimal("1234.00"),
            )
        )
        for tid, account_id in rows:
            yield Hit(account_id, tid, 1.0, {"amount": Decimal("1234.00")})


def test_a_rule_may_yield_plain_objects_of_findings_shape(make_app):
    app = make_app("fraud", fake_plugin("plain", register_fraud_rules=lambda: [PlainRule()]))
    bank = Bank(app.runtime.db)
    account = bank.account()
    flagged = bank.tx(account, "1234.00", T0)
    bank.tx(account, "1234.01", T0)
    assert analyse()["by_rule"]["plain_round"] == 1
    assert analyse()["alerts_created"] == 0  # deduplicated by its transaction id
    (alert,) = bank.alerts("plain_round")
    assert (alert.transaction_id, alert.severity) == (flagged, "medium")
    assert alert.evidence == {"amount": "1234.00"}


def test_a_rule_of_a_plugin_without_settings_gets_plain_plugin_settings(make_app):
    seen = []

    class Spy:
        name = "spy"
        version = "1"
        severity = "low"

        def find(self, ctx):
            seen.append(ctx)
            return []

    app = make_app("fraud", fake_plugin("acme_rules", register_fraud_rules=lambda: [Spy()]))
    analyse()
    (ctx,) = seen
    assert ctx.settings is app.runtime.settings_for("acme_rules")
    assert not isinstance(ctx.settings, FraudSettings)
    assert ctx.fraud_settings is app.runtime.settings_for("fraud")


def test_the_built_in_rules_get_the_fraud_settings(make_app):
    seen = []
    original = Velocity.find

    def spy(self, ctx):
        seen.append(ctx)
        return original(self, ctx)

    app = make_app("fraud")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Velocity, "find", spy)
        analyse()
    (ctx,) = seen
    assert ctx.settings is ctx.fraud_settings is app.runtime.settings_for("fraud")


class AccountWindowRule:
    """Account-level findings keyed by window start (no transaction id)."""

    name = "account_window"
    version = "1"
    severity = "medium"

    def __init__(self, window_start):
        self.window_start = window_start

    def find(self, ctx):
        return [
            Finding(account_id=7, transaction_id=None, score=0.5, window_start=self.window_start)
        ]


def test_dedup_key_from_account_and_window_start(make_app):
    start = datetime(2024, 5, 1, tzinfo=UTC)
    rule = AccountWindowRule(start)
    make_app("fraud", fake_plugin("acme", register_fraud_rules=lambda: [rule]))
    assert analyse()["by_rule"]["account_window"] == 1
    assert analyse()["by_rule"]["account_window"] == 0
    with current().db.session() as session:
        alert = session.scalars(select(FraudAlert)).one()
    assert (alert.dedup_key, alert.transaction_id) == ("account:7:1714521600000000", None)


def test_a_finding_without_any_key_is_a_clear_error(make_app):
    rule = AccountWindowRule(None)
    make_app("fraud", fake_plugin("acme", register_fraud_rules=lambda: [rule]))
    with pytest.raises(ValueError, match="'account_window' returned a finding for account 7"):
        analyse()


class BadSeverity:
    name = "shouty"
    severity = "urgent"

    def find(self, ctx):
        return []


def test_a_rule_with_an_unknown_severity_stops_start_up(make_app):
    acme = fake_plugin("acme", register_fraud_rules=lambda: [BadSeverity()])
    with pytest.raises(ConfigError, match="'shouty': severity 'urgent' is not one of low"):
        make_app("fraud", acme)


def test_rule_names_are_unique(make_app):
    acme = fake_plugin("acme", register_fraud_rules=lambda: [Velocity()])
    with pytest.raises(ConfigError, match="'velocity' is registered twice"):
        make_app("fraud", acme)


# -- on_fraud_alert -----------------------------------------------------------------------


def recorder(seen):
    def on_fraud_alert(alert):
        # Called after commit: a fresh session sees the alert already.
        with current().db.session() as session:
            stored = session.get(FraudAlert, alert.id)
        seen.append((alert, stored is not None))

    return fake_plugin("recorder", on_fraud_alert=on_fraud_alert)


def test_on_fraud_alert_once_per_new_alert_at_or_above_high(make_app):
    seen = []
    bank = Bank(make_app("fraud", recorder(seen)).runtime.db)
    plant_one_of_each(bank)
    result = analyse()
    assert result["alerts_created"] == 4
    assert result["emitted"] == 3
    assert sorted((a.rule, a.severity) for a, _ in seen) == [
        ("large_transaction", "high"),
        ("structuring", "critical"),
        ("structuring", "high"),
    ]
    assert all(committed for _, committed in seen)
    alert = seen[0][0]
    assert isinstance(alert, FraudAlert)
    assert alert.id and alert.status == "open" and alert.evidence and alert.created_at
    assert alert.resolved_at is None
    analyse()
    analyse(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=5))
    assert len(seen) == 3


@pytest.mark.parametrize(("minimum", "expected"), [("medium", 4), ("critical", 1), ("low", 4)])
def test_alert_min_severity(make_app, monkeypatch, minimum, expected):
    monkeypatch.setenv("FRAUD_ALERT_MIN_SEVERITY", minimum.upper())
    seen = []
    plant_one_of_each(Bank(make_app("fraud", recorder(seen)).runtime.db))
    analyse()
    assert len(seen) == expected


def test_a_failing_listener_does_not_lose_alerts(make_app):
    def on_fraud_alert(alert):
        raise RuntimeError("mail server on fire")

    broken = fake_plugin("broken", on_fraud_alert=on_fraud_alert)
    bank = Bank(make_app("fraud", broken).runtime.db)
    plant_one_of_each(bank)
    result = analyse()
    assert (result["alerts_created"], result["emitted"], result["notify_failed"]) == (4, 0, 3)
    assert len(bank.alerts()) == 4


# -- settings -----------------------------------------------------------------------------


def test_defaults(fraud_app):
    settings = fraud_app.runtime.settings_for("fraud")
    assert settings.large_amount == Decimal("10000")
    assert (settings.velocity_limit, settings.velocity_window_minutes) == (10, 60)
    assert settings.structuring_band_low == Decimal("0.90")
    assert (settings.structuring_window_hours, settings.structuring_min_count) == (24, 2)
    assert (settings.rules, settings.disable_rules) == (None, None)
    assert settings.unresolved_max_age_days == 7
    assert settings.alert_min_severity == "high"
    assert (settings.initial_lookback_days, settings.overlap_hours) == (30, 24)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FRAUD_LARGE_AMOUNT", "0", "FRAUD_LARGE_AMOUNT='0': Input should be greater than 0"),
        ("FRAUD_LARGE_AMOUNT", "10.001", "at most two decimal places"),
        ("FRAUD_VELOCITY_LIMIT", "0", "FRAUD_VELOCITY_LIMIT='0'"),
        ("FRAUD_STRUCTURING_BAND_LOW", "1", "FRAUD_STRUCTURING_BAND_LOW='1'"),
        ("FRAUD_STRUCTURING_BAND_LOW", "0", "FRAUD_STRUCTURING_BAND_LOW='0'"),
        ("FRAUD_STRUCTURING_MIN_COUNT", "1", "FRAUD_STRUCTURING_MIN_COUNT='1'"),
        ("FRAUD_ALERT_MIN_SEVERITY", "urgent", "FRAUD_ALERT_MIN_SEVERITY='urgent'"),
        ("FRAUD_UNRESOLVED_MAX_AGE_DAYS", "-1", "FRAUD_UNRESOLVED_MAX_AGE_DAYS='-1'"),
        ("FRAUD_OVERLAP_HOURS", "12", "FRAUD_OVERLAP_HOURS=12 must cover the longest rule window"),
    ],
)
def test_bad_settings_stop_start_up(bank_with, variable, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        bank_with(**{variable: value})
