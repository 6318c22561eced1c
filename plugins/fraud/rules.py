"""The rule surface: `Rule`, `RuleContext`, `Finding`, and how rules are collected and picked."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core import ConfigError
from core.db import to_micros
from core.plugins import PluginSet
from plugins.fraud.models import SEVERITIES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plugins.fraud.settings import FraudSettings


@dataclass(frozen=True)
class RuleContext:
    """What a rule gets: a session, the window `[since, until)` (aware UTC), fraud settings.

    `since_us` / `until_us` are the same bounds as integer epoch microseconds, the
    stored form of every time column, for window arithmetic in SQL. `now` is when
    the analysis runs (None: no limit); see `lookahead_until_us`.
    """

    session: Session
    since: datetime
    until: datetime
    settings: FraudSettings
    now: datetime | None = None

    @property
    def since_us(self) -> int:
        """`since` as epoch microseconds."""
        return to_micros(self.since)

    @property
    def until_us(self) -> int:
        """`until` as epoch microseconds."""
        return to_micros(self.until)

    def lookahead_until_us(self, window_us: int) -> int:
        """Where a rule with a rolling window of `window_us` stops reading rows.

        A pattern anchored before `until` may reach up to a window past it, so the
        rule reads on to `until + window`, but never past `now`: rows stamped
        after the analysis started are left to a later run (the scheduled run,
        whose `until` is now, reads nothing after it).
        """
        end = self.until_us + window_us
        if self.now is not None:
            end = max(self.until_us, min(end, to_micros(self.now)))
        return end


@dataclass
class Finding:
    """One suspicious pattern a rule found.

    `evidence` is a JSON-safe dict (Decimals and datetimes are turned into strings
    when stored). The dedup key keeps the alert unique per rule: give `dedup_key`,
    or it is derived from `transaction_id`, or from `account_id` + `window_start`.
    `severity` overrides the rule's severity for this finding.
    """

    account_id: int
    transaction_id: int | None
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    window_start: datetime | None = None
    severity: str | None = None

    def key(self, rule: str) -> str:
        """The dedup key of this finding (stored with the rule's name)."""
        if self.dedup_key:
            return self.dedup_key
        if self.transaction_id is not None:
            return f"tx:{self.transaction_id}"
        if self.window_start is not None:
            return f"account:{self.account_id}:{to_micros(self.window_start)}"
        raise ValueError(
            f"fraud rule {rule!r} returned a Finding for account {self.account_id} with no "
            "transaction_id, window_start or dedup_key: set one so the alert can be deduplicated"
        )


@runtime_checkable
class Rule(Protocol):
    """A fraud rule: set-based SQL over `ctx`'s window that yields Findings."""

    name: str
    severity: str

    def find(self, ctx: RuleContext) -> Iterable[Finding]:
        """Yield a Finding per suspicious pattern in `[ctx.since, ctx.until)`."""
        ...


def _check_severity(plugin: str, rule: Any) -> None:
    severity = getattr(rule, "severity", None)
    if severity not in SEVERITIES:
        raise ConfigError(
            f"plugin {plugin!r}: fraud rule {rule.name!r}: severity {severity!r} is not one of "
            f"{', '.join(SEVERITIES)}"
        )


def collect_rules(plugins: PluginSet) -> dict[str, Rule]:
    """Every rule registered through `register_fraud_rules`, by name (checked)."""
    rules: dict[str, Rule] = plugins.collect_named(
        "register_fraud_rules", "fraud rule", methods=("find",), check=_check_severity
    )
    return rules


def select_rules(rules: dict[str, Rule], settings: FraudSettings) -> list[Rule]:
    """Apply FRAUD_RULES (allow-list) and FRAUD_DISABLE_RULES (deny-list); unknown names fail."""
    existing = ", ".join(sorted(rules)) or "(none)"
    for setting, names in (
        ("FRAUD_RULES", settings.rules),
        ("FRAUD_DISABLE_RULES", settings.disable_rules),
    ):
        unknown = sorted(set(names or ()) - set(rules))
        if unknown:
            raise ConfigError(
                f"{setting}={','.join(names or ())}: unknown fraud rule(s) {', '.join(unknown)}; "
                f"rules that exist: {existing}"
            )
    allow = set(settings.rules) if settings.rules else None
    deny = set(settings.disable_rules or ())
    return [
        rule
        for name, rule in sorted(rules.items())
        if (allow is None or name in allow) and name not in deny
    ]
