"""The rule surface: `Rule`, `RuleContext`, `Finding`, and how rules are collected and picked."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core import ConfigError
from core.db import to_micros
from plugins.fraud.models import SEVERITIES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plugins.fraud.settings import FraudSettings


@dataclass(frozen=True)
class RuleContext:
    """What a rule gets: a session, the window `[since, until)` (aware UTC), fraud settings.

    `since_us` / `until_us` are the same bounds as integer epoch microseconds, the
    stored form of every time column, for window arithmetic in SQL.
    """

    session: Session
    since: datetime
    until: datetime
    settings: FraudSettings

    @property
    def since_us(self) -> int:
        """`since` as epoch microseconds."""
        return to_micros(self.since)

    @property
    def until_us(self) -> int:
        """`until` as epoch microseconds."""
        return to_micros(self.until)


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


def collect_rules(hook: Any) -> dict[str, Rule]:
    """Every rule registered through `register_fraud_rules`, by name (checked)."""
    found: dict[str, Rule] = {}
    for batch in hook.register_fraud_rules():
        for rule in batch or ():
            name = getattr(rule, "name", None)
            if not isinstance(name, str) or not name or not callable(getattr(rule, "find", None)):
                raise ConfigError(
                    f"register_fraud_rules returned {rule!r}: a rule needs a non-empty `name` "
                    "and a `find(ctx)` method"
                )
            if getattr(rule, "severity", None) not in SEVERITIES:
                raise ConfigError(
                    f"fraud rule {name!r}: severity {getattr(rule, 'severity', None)!r} is not "
                    f"one of {', '.join(SEVERITIES)}"
                )
            if name in found:
                raise ConfigError(f"fraud rule {name!r} is registered twice; rule names are unique")
            found[name] = rule
    return found


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
