"""The README's third-party rule example runs as printed, with its own settings."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from .helpers import T0, Bank, analyse

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_rule_module() -> ModuleType:
    """The README's `acme_rules.py` block, executed as a module named `acme_rules`."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (source,) = [block for block in blocks if block.startswith("# acme_rules.py")]
    module = ModuleType("acme_rules")
    exec(compile(source, str(README), "exec", dont_inherit=True), module.__dict__)
    return module


@pytest.mark.parametrize(
    ("plugin_settings", "flagged"),
    [({}, ["3000.00"]), ({"acme_rules": {"round_unit": "500"}}, ["1500.00", "3000.00"])],
    ids=["default-unit", "own-setting"],
)
def test_the_readme_rule_reads_its_own_settings(make_app, plugin_settings, flagged):
    acme_rules = readme_rule_module()
    app = make_app("fraud", ("acme_rules", acme_rules), plugin_settings=plugin_settings)
    bank = Bank(app.runtime.db)
    account = bank.account()
    for amount in ("1500.00", "3000.00", "3000.01"):
        bank.tx(account, amount, T0)
    assert analyse()["by_rule"]["round_amount"] == len(flagged)
    alerts = {a.evidence["amount"]: a for a in bank.alerts("round_amount")}
    assert sorted(alerts) == flagged
    assert {a.severity for a in alerts.values()} == {"low"}
    assert alerts["3000.00"].score == pytest.approx(0.3)  # / FRAUD_LARGE_AMOUNT (10000)
