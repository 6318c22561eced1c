"""Collecting the registered rules (with the plugin that registered each) and picking them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core import ConfigError, Contribution, PluginSet
from plugins.fraud.models import SEVERITIES
from plugins.fraud.settings import FraudSettings

MAX_VERSION_LENGTH = 32
"""The longest rule version (`fraud_alerts.rule_version` is a String(32))."""


def _check_rule(plugin: str, rule: Any) -> None:
    """A known severity, and a version: a non-empty string of at most 32 characters."""
    severity = getattr(rule, "severity", None)
    if severity not in SEVERITIES:
        raise ConfigError(
            f"plugin {plugin!r}: fraud rule {rule.name!r}: severity {severity!r} is not one of "
            f"{', '.join(SEVERITIES)}"
        )
    version = getattr(rule, "version", None)
    if version is None:
        raise ConfigError(
            f"plugin {plugin!r}: fraud rule {rule.name!r} has no version: "
            'set `version = "1"` on the rule'
        )
    if not isinstance(version, str) or not version.strip() or len(version) > MAX_VERSION_LENGTH:
        raise ConfigError(
            f"plugin {plugin!r}: fraud rule {rule.name!r}: version {version!r} is not a "
            f'string of 1 to {MAX_VERSION_LENGTH} characters; set e.g. `version = "1"` on the rule'
        )


def collect_rules(plugins: PluginSet) -> list[Contribution]:
    """Every rule registered through `register_fraud_rules` (checked: a known severity and a
    version), as Contributions: `plugin` (who registered it), `name` and `obj` (the rule)."""
    return plugins.contributions(
        "register_fraud_rules", "fraud rule", methods=("find",), check=_check_rule
    )


def unknown_rules(asked: Iterable[str], registered: Iterable[str]) -> str | None:
    """What is wrong with the rule names `asked` (`unknown fraud rule(s) …; rules that exist:
    …`), or None when every one is registered. Each caller raises its own error with it."""
    existing = set(registered)
    unknown = sorted(set(asked) - existing)
    if not unknown:
        return None
    return (
        f"unknown fraud rule(s) {', '.join(unknown)}; rules that exist: "
        f"{', '.join(sorted(existing)) or '(none)'}"
    )


def select_rules(rules: list[Contribution], settings: FraudSettings) -> list[Contribution]:
    """Apply FRAUD_RULES (allow-list), FRAUD_ENABLE_RULES (rules that are off by default:
    `enabled_by_default = False` on the rule) and FRAUD_DISABLE_RULES (deny-list, wins);
    unknown names fail.

    Without FRAUD_RULES every rule that is on by default runs, plus those
    FRAUD_ENABLE_RULES names. The rules come back sorted by name (the order they run in).
    """
    names = {rule.name for rule in rules}
    for setting, listed in (
        ("FRAUD_RULES", settings.rules),
        ("FRAUD_ENABLE_RULES", settings.enable_rules),
        ("FRAUD_DISABLE_RULES", settings.disable_rules),
    ):
        problem = unknown_rules(listed or (), names)
        if problem:
            raise ConfigError(f"{setting}={','.join(listed or ())}: {problem}")
    enabled = set(settings.enable_rules or ())
    allow = (
        set(settings.rules)
        if settings.rules
        else {r.name for r in rules if getattr(r.obj, "enabled_by_default", True)} | enabled
    )
    deny = set(settings.disable_rules or ())
    return [rule for rule in sorted(rules, key=lambda r: r.name) if rule.name in allow - deny]
