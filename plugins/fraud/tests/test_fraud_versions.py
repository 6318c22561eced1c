"""Rule versions: every rule declares one, and every alert records the rule's version and the
hash of the settings it ran with (`plugins.fraud.api.settings_hash`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import BigInteger, select, type_coerce

from banktasks_testing import fake_plugin
from core import ConfigError, PluginSettings, current
from core.models import Transaction
from plugins.fraud import Finding, FraudAlert, Rule, RuleContext
from plugins.fraud.api import rule_settings_hash, settings_hash
from plugins.fraud.builtin import LargeTransaction

from .helpers import T0, Bank, analyse

ROOT = Path(__file__).resolve().parents[3]


def large_hash(fraud: object) -> str:
    """The settings hash of large_transaction's alerts: of the one setting it reads."""
    return rule_settings_hash(LargeTransaction(), fraud, fraud)


def hashes(bank: Bank, rule: str | None = None) -> dict[str, tuple[str | None, str | None]]:
    """Per alert's dedup key: (rule_version, settings_hash)."""
    return {a.dedup_key: (a.rule_version, a.settings_hash) for a in bank.alerts(rule)}


# -- what an alert records ----------------------------------------------------------------


def test_an_alert_records_the_rule_version_and_the_settings_hash(bank, fraud_app):
    tid = bank.tx(bank.account(), "15000.00", T0)
    analyse()
    (alert,) = bank.alerts("large_transaction")
    fraud = fraud_app.runtime.settings_for("fraud")
    assert (alert.rule, alert.rule_version) == ("large_transaction", "1")
    assert alert.settings_hash == large_hash(fraud)
    assert large_hash(fraud) == settings_hash(fraud, fraud, ["large_amount"])
    assert len(alert.settings_hash) == 16 and int(alert.settings_hash, 16) >= 0
    shown = alert.as_dict()
    assert (shown["rule_version"], shown["settings_hash"]) == ("1", alert.settings_hash)
    assert alert.dedup_key == f"tx:{tid}"


def test_a_changed_fraud_setting_changes_the_hash_of_new_alerts(make_app):
    bank = Bank(make_app("fraud").runtime.db)
    account = bank.account()
    big = bank.tx(account, "15000.00", T0)
    analyse()
    ((_, before),) = hashes(bank, "large_transaction").values()

    bank.tx(account, "6000.00", T0)
    make_app("fraud", plugin_settings={"fraud": {"large_amount": "5000"}})
    result = analyse()

    # the 6000.00 only: the 15000.00 has its alert already
    assert result["by_rule"]["large_transaction"] == 1
    after = hashes(bank, "large_transaction")
    assert after[f"tx:{big}"] == ("1", before)  # kept as it was raised
    (new,) = (h for key, (_, h) in after.items() if key != f"tx:{big}")
    assert new != before
    assert new == large_hash(current().settings_for("fraud"))


def test_the_same_settings_give_the_same_hash_in_another_app(make_app):
    first = make_app("fraud", plugin_settings={"fraud": {"large_amount": "5000"}})
    second = make_app("fraud", plugin_settings={"fraud": {"large_amount": "5000.00"}})
    third = make_app("fraud", plugin_settings={"fraud": {"large_amount": "5000.01"}})
    one, two, three = (app.runtime.settings_for("fraud") for app in (first, second, third))
    assert one is not two
    assert settings_hash(one, one) == settings_hash(two, two)  # 5000 and 5000.00 are equal
    assert settings_hash(three, three) != settings_hash(one, one)


# -- the recipe, and that it is the same in every process --------------------------------


class Sample(BaseModel):
    amount: Decimal = Decimal("10000.00")
    ratio: Decimal = Decimal("0.90")
    names: set[str] = Field(default_factory=lambda: {"velocity", "structuring", "large"})
    at: datetime = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    password: SecretStr = SecretStr("hunter2")
    label: str = "Zürich"
    limit: int = 10


SAMPLE_JSON = (
    '{"amount":"10000","at":"2024-05-01T10:30:00Z","label":"Z\\u00fcrich","limit":10,'
    '"names":["large","structuring","velocity"],"password":"**********","ratio":"0.9"}'
)


def test_the_hash_is_the_documented_recipe():
    document = f'{{"fraud":{SAMPLE_JSON},"rule":{{"limit":3}}}}'
    expected = hashlib.sha256(document.encode()).hexdigest()[:16]

    class Own(BaseModel):
        limit: int = 3

    assert settings_hash(Own(), Sample()) == expected
    assert settings_hash(Sample(), Own()) != expected  # which is the rule's matters
    # secrets count as their mask: a changed password does not change the hash
    assert settings_hash(Own(), Sample(password=SecretStr("other"))) == expected


DIGESTS = """
from pydantic import BaseModel

from plugins.fraud.api import rule_settings_hash, settings_hash
from plugins.fraud.builtin import LargeTransaction
from plugins.fraud.settings import FraudSettings


class Tags(BaseModel):
    tags: set[str] = {"velocity", "structuring", "large_transaction", "round_amount"}


fraud = FraudSettings(large_amount="5000", rules="velocity,structuring")
DIGESTS = f"{settings_hash(fraud, fraud)} {settings_hash(Tags(), fraud)}"
"""


def test_the_hash_is_the_same_in_every_process(bt_env, tmp_path):
    """Not Python's `hash()`: processes with other hash seeds (so other set orders) agree,
    with each other and with this one."""
    here: dict = {}
    exec(compile(DIGESTS, "DIGESTS", "exec"), here)
    script = DIGESTS + "print(DIGESTS)\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for seed in ("0", "1", "2", "3"):
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == here["DIGESTS"]


# -- a third-party rule: its own plugin's settings are part of its hash -------------------


class AcmeSettings(PluginSettings):
    """ACME_* settings of a third-party rule package."""

    round_unit: Decimal = Field(Decimal("1000"), gt=0, description="flag multiples of this")


class RoundAmounts:
    name = "round_amount"
    version = "2024-06"
    severity = "low"

    def find(self, ctx: RuleContext):
        cents = type_coerce(Transaction.__table__.c.amount_minor, BigInteger)
        unit = int(ctx.settings.round_unit * 100)
        rows = ctx.session.execute(
            select(Transaction.id, Transaction.account_id).where(
                Transaction.created_at >= ctx.since,
                Transaction.created_at < ctx.until,
                cents % unit == 0,
            )
        )
        for tid, account_id in rows:
            yield Finding(account_id, tid, score=1.0)


def acme(rule=None):
    return fake_plugin(
        "acme",
        register_settings=lambda: ("acme", AcmeSettings),
        register_fraud_rules=lambda: [rule or RoundAmounts()],
    )


def test_a_third_party_rule_hashes_its_own_plugins_settings(make_app):
    assert isinstance(RoundAmounts(), Rule)
    seen: dict[str, str | None] = {}
    bank = None
    for unit in ("1000", "500"):
        app = make_app("fraud", ("acme", acme()), plugin_settings={"acme": {"round_unit": unit}})
        bank = bank or Bank(app.runtime.db)
        bank.tx(bank.account(), "15000.00", T0)
        analyse()
        own, fraud = app.runtime.settings_for("acme"), app.runtime.settings_for("fraud")
        (alert,) = [a for a in bank.alerts("round_amount") if a.dedup_key not in seen]
        assert alert.rule_version == "2024-06"
        assert alert.settings_hash == settings_hash(own, fraud)
        seen[alert.dedup_key] = alert.settings_hash
        # the built-in rules hash the fraud settings they read: acme's leave them alone
        assert {a.settings_hash for a in bank.alerts("large_transaction")} == {large_hash(fraud)}
    first, second = seen.values()
    assert first != second


def test_a_new_version_does_not_raise_a_stored_alert_again(make_app):
    app = make_app("fraud", ("acme", acme()))
    bank = Bank(app.runtime.db)
    account = bank.account()
    old = bank.tx(account, "3000.00", T0)
    analyse()

    class RoundAmountsV2(RoundAmounts):
        version = "2"

    bank.tx(account, "4000.00", T0)
    make_app("fraud", ("acme", acme(RoundAmountsV2())))
    assert analyse()["by_rule"]["round_amount"] == 1  # only the new one
    stored = hashes(bank, "round_amount")
    assert stored.pop(f"tx:{old}")[0] == "2024-06"  # the dedup key is unchanged
    assert [version for version, _ in stored.values()] == ["2"]


# -- a rule without a version stops start-up ----------------------------------------------


class Unversioned:
    name = "unversioned"
    severity = "low"

    def find(self, ctx):
        return []


def test_a_rule_without_a_version_stops_start_up(make_app):
    with pytest.raises(ConfigError) as info:
        make_app("fraud", fake_plugin("acme", register_fraud_rules=lambda: [Unversioned()]))
    assert str(info.value) == (
        "plugin 'acme': fraud rule 'unversioned' has no version: set `version = \"1\"` on the rule"
    )


@pytest.mark.parametrize("version", ["", "  ", 1, 1.0, "x" * 33, b"1"])
def test_a_version_must_be_a_short_string(make_app, version):
    class Odd(Unversioned):
        pass

    Odd.version = version
    with pytest.raises(ConfigError) as info:
        make_app("fraud", fake_plugin("acme", register_fraud_rules=lambda: [Odd()]))
    assert str(info.value) == (
        f"plugin 'acme': fraud rule 'unversioned': version {version!r} is not a string of 1 "
        'to 32 characters; set e.g. `version = "1"` on the rule'
    )


def test_a_version_of_32_characters_is_fine(make_app):
    class Long(Unversioned):
        version = "v" * 32

    make_app("fraud", fake_plugin("acme", register_fraud_rules=lambda: [Long()]))
    assert analyse()["by_rule"]["unversioned"] == 0


# -- the CLI shows them -------------------------------------------------------------------


@pytest.fixture
def banktasks(fraud_app):
    group = click.Group("banktasks")
    fraud_app.runtime.hook.register_commands(cli=group)
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(group, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    return invoke


def test_alerts_list_and_show_print_the_version_and_the_hash(bank, fraud_app, banktasks):
    bank.tx(bank.account(), "15000.00", T0)
    analyse()
    with fraud_app.runtime.db.session() as session:  # an alert stored before versions
        session.add(
            FraudAlert(
                rule="large_transaction",
                account_id=1,
                transaction_id=None,
                severity="high",
                score=1.0,
                evidence={},
                dedup_key="legacy",
            )
        )
    fraud = fraud_app.runtime.settings_for("fraud")
    expected = {"tx": ("1", large_hash(fraud)), "legacy": (None, None)}

    listed = banktasks("alerts", "list", "--rule", "large_transaction", "--json")
    assert {
        r["dedup_key"].split(":")[0]: (r["rule_version"], r["settings_hash"]) for r in listed
    } == (expected)
    for row in listed:
        shown = banktasks("alerts", "show", str(row["id"]))
        assert (shown["rule_version"], shown["settings_hash"]) == (
            row["rule_version"],
            row["settings_hash"],
        )


# -- settings_fields: a rule's hash covers only the settings it reads ---------------------


class NarrowRoundAmounts(RoundAmounts):
    name = "round_amount"
    settings_fields = ("round_unit",)


def test_a_rule_declaring_its_settings_fields_hashes_only_those(make_app):
    digests: dict[str, str | None] = {}
    bank = None
    for unit, large in (("1000", "10000"), ("1000", "20000"), ("500", "20000")):
        app = make_app(
            "fraud",
            ("acme", acme(NarrowRoundAmounts())),
            plugin_settings={"acme": {"round_unit": unit}, "fraud": {"large_amount": large}},
        )
        bank = bank or Bank(app.runtime.db)
        bank.tx(bank.account(), "15000.00", T0)
        analyse()
        (alert,) = [a for a in bank.alerts("round_amount") if a.dedup_key not in digests]
        digests[alert.dedup_key] = alert.settings_hash
        document = json.dumps({"fields": {"round_unit": unit}}, separators=(",", ":"))
        assert alert.settings_hash == hashlib.sha256(document.encode()).hexdigest()[:16]
    # FRAUD_LARGE_AMOUNT is not the rule's: changing it leaves the hash; ACME_ROUND_UNIT is
    first, second, third = digests.values()
    assert first == second != third


def test_the_built_in_rules_hash_the_settings_they_read(make_app):
    def hashes_with(**fraud: str) -> dict[str, str]:
        app = make_app("fraud", plugin_settings={"fraud": fraud})
        settings = app.runtime.settings_for("fraud")
        from plugins.fraud.engine import active_rules

        return {a.rule.name: a.settings_hash for a in active_rules(app.runtime, settings)}

    base = hashes_with()
    velocity = hashes_with(velocity_limit="20")
    assert {name for name in base if base[name] != velocity[name]} == {"velocity"}
    large = hashes_with(large_amount="20000")
    # structuring's band is a share of FRAUD_LARGE_AMOUNT: both change
    assert {name for name in base if base[name] != large[name]} == {
        "large_transaction",
        "structuring",
    }


def test_an_unknown_settings_field_stops_start_up(make_app):
    class Misnamed(RoundAmounts):
        settings_fields = ("round_units",)

    with pytest.raises(ConfigError, match=r"round_units.*neither AcmeSettings nor FraudSettings"):
        make_app("fraud", ("acme", acme(Misnamed())))
