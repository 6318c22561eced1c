"""Collecting the registered rules (with the plugin that registered each) and picking them."""

from __future__ import annotations

from typing import Any

from core import ConfigError, Contribution, PluginSet
from plugins.fraud.models import SEVERITIES
from plugins.fraud.settings import FraudSettings


def _check_severity(plugin: str, rule: Any) -> None:
    severity = getattr(rule, "severity", None)
    if severity not in SEVERITIES:
        raise ConfigError(
            f"plugin {plugin!r}: fraud rule {rule.name!r}: severity {severity!r} is not one of "
            f"{', '.join(SEVERITIES)}"
        )


def collect_rules(plugins: PluginSet) -> list[Contribution]:
    """Every rule registered through `register_fraud_rules` (checked), as Contributions:
    `plugin` (who registered it), `name` and `obj` (the rule)."""
    return plugins.contributions(
        "register_fraud_rules", "fraud rule", methods=("find",), check=_check_severity
    )


def select_rules(rules: list[Contribution], settings: FraudSettings) -> list[Contribution]:
    """Apply FRAUD_RULES (allow-list) and FRAUD_DISABLE_RULES (deny-list); unknown names fail.

    The rules come back sorted by name (the order they run in).
    """
    names = {rule.name for rule in rules}
    existing = ", ".join(sorted(names)) or "(none)"
    for setting, listed in (
        ("FRAUD_RULES", settings.rules),
        ("FRAUD_DISABLE_RULES", settings.disable_rules),
    ):
        unknown = sorted(set(listed or ()) - names)
        if unknown:
            raise ConfigError(
                f"{setting}={','.join(listed or ())}: unknown fraud rule(s) "
                f"{', '.join(unknown)}; rules that exist: {existing}"
            )
    allow = set(settings.rules) if settings.rules else None
    deny = set(settings.disable_rules or ())
    return [
        rule
        for rule in sorted(rules, key=lambda r: r.name)
        if (allow is None or rule.name in allow) and rule.name not in deny
    ]
