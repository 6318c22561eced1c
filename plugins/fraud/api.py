"""The shapes a rule author writes against: `Rule`, `RuleContext` and `Finding`.

A rule is any object with a `name`, a `version`, a `severity` and `find(ctx)`; a
plugin returns rules from its `register_fraud_rules()` implementation. Each rule
is called with a `RuleContext` whose `settings` are the settings of the plugin
that registered it (`fraud_settings` are always the fraud plugin's). Every alert
records the rule's `version` and `rule_settings_hash(rule, settings, fraud_settings)`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from core import ConfigError
from core.db import to_micros
from core.sources import DataTables, native_tables

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plugins.fraud.settings import FraudSettings


@dataclass(frozen=True)
class RuleContext:
    """What a rule gets: a session, the window `[since, until)` (aware UTC) and settings.

    `settings` are the settings of the plugin that registered the rule (its
    `register_settings` model; a plain `core.PluginSettings` if it declares
    none), so a rule reads its own thresholds without naming its plugin. For the
    built-in rules they are the fraud plugin's. `fraud_settings` are always the
    fraud plugin's `FraudSettings` (e.g. `FRAUD_LARGE_AMOUNT`).

    `tables` are the transactions (and users, accounts) to read: `ctx.tables.transactions`
    has the columns of `core.models.Transaction` whether banktasks' own table or a bank's
    table seen through `DATA_MAPPING` is behind it; `session` reads them.

    `since_us` / `until_us` are the same bounds as integer epoch microseconds, the
    stored form of every time column, for window arithmetic in SQL. `now` is when
    the analysis runs (None: no limit); see `lookahead_until_us`.
    """

    session: Session
    since: datetime
    until: datetime
    settings: Any
    now: datetime | None = None
    fraud_settings: FraudSettings = field(kw_only=True)
    tables: DataTables = field(default_factory=native_tables, kw_only=True)

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
        return finding_key(self, rule)


def finding_key(finding: Any, rule: str) -> str:
    """The dedup key of any object with Finding's attributes (a rule need not import
    `Finding`: a dataclass of its own with `account_id`, `transaction_id`, `score`,
    `evidence` and optionally `dedup_key`, `window_start`, `severity` does)."""
    dedup_key = getattr(finding, "dedup_key", None)
    if dedup_key:
        return str(dedup_key)
    if finding.transaction_id is not None:
        return f"tx:{finding.transaction_id}"
    window_start = getattr(finding, "window_start", None)
    if window_start is not None:
        return f"account:{finding.account_id}:{to_micros(window_start)}"
    raise ValueError(
        f"fraud rule {rule!r} returned a finding for account {finding.account_id} with no "
        "transaction_id, window_start or dedup_key: set one so the alert can be deduplicated"
    )


@runtime_checkable
class Rule(Protocol):
    """A fraud rule: set-based SQL over `ctx`'s window that yields Findings.

    `name` is unique across plugins (it is what `FRAUD_RULES` and
    `FRAUD_DISABLE_RULES` list); `version` is a string of 1 to 32 characters
    (`"1"`, `"2024-06"`) stored with every alert the rule raises: change it when
    what the rule finds changes (required: a rule without one stops start-up);
    `severity` is one of `low`, `medium`, `high`, `critical` (a Finding may
    override it). Optional: `settings_fields`, the names of the settings fields the
    rule reads (its plugin's or the fraud plugin's), so that its alerts' settings
    hash covers only those (`rule_settings_hash`); `enabled_by_default = False` to
    run only when FRAUD_ENABLE_RULES or FRAUD_RULES names it; `completes_within(settings)`
    (a `timedelta`) when a pattern may complete that long after the transaction its
    alert points at (the back-test then counts a stored alert as "no longer raised" only
    when the window could have seen it whole).
    """

    name: str
    version: str
    severity: str

    def find(self, ctx: RuleContext) -> Iterable[Finding]:
        """Yield a Finding per suspicious pattern in `[ctx.since, ctx.until)`."""
        ...


SETTINGS_HASH_LENGTH = 16
"""Hex digits of `settings_hash` kept (64 bits; the column holds up to 64)."""


def _canonical(value: Any) -> Any:
    """`value` (a `model_dump(mode="python")`) as JSON data that is the same for equal settings:
    Decimals normalised (`10000.00` → `"10000"`, `0.90` → `"0.9"`), sets sorted, the rest
    as pydantic writes it in JSON (datetimes ISO 8601, secrets masked)."""
    if isinstance(value, BaseModel):
        return _canonical(value.model_dump(mode="python"))
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_canonical(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    return to_jsonable_python(value)


def settings_hash(settings: Any, fraud_settings: Any, fields: Iterable[str] | None = None) -> str:
    """A stable digest of the settings a rule runs with, stored with each of its alerts.

    `settings` is the rule's `ctx.settings` (its own plugin's settings model; for the
    built-in rules the fraud plugin's) and `fraud_settings` is `ctx.fraud_settings`.
    The recipe: every field of each model (`model_dump(mode="python")`, so unset
    fields count with their defaults, the plugin's `schedule` included) made canonical
    (Decimals normalised to plain strings, so `10000` and `10000.00` are the same;
    sets sorted; datetimes and the rest as pydantic writes JSON; secrets as their
    mask `**********`, so a changed password leaves the hash alone), put in
    `{"fraud": <fraud_settings>, "rule": <settings>}`, written as JSON with sorted
    keys, no spaces and ASCII escapes (`json.dumps(..., sort_keys=True,
    separators=(",", ":"))`), encoded UTF-8, SHA-256, the first 16 hex digits.

    So it changes when any of those settings changes (a threshold, FRAUD_RULES,
    FRAUD_ALERT_MIN_SEVERITY, the plugin's schedule alike) and is the same for the
    same settings in any process (not Python's `hash()`).

    With `fields` (a rule's `settings_fields`) the document is `{"fields": {name: value}}`
    instead, holding only those fields, each read from `settings` or, when that model has
    no such field, from `fraud_settings` (ValueError naming a field neither has): then the
    hash changes only when a setting the rule reads changes.
    """
    document: dict[str, Any]
    if fields is not None:
        document = {"fields": {name: _field(name, settings, fraud_settings) for name in fields}}
    else:
        document = {"fraud": _canonical(fraud_settings), "rule": _canonical(settings)}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:SETTINGS_HASH_LENGTH]


def _field(name: str, settings: Any, fraud_settings: Any) -> Any:
    """The canonical value of field `name` of `settings`, else of `fraud_settings`."""
    for model in (settings, fraud_settings):
        if name in type(model).model_fields:
            return _canonical(getattr(model, name))
    raise ValueError(
        f"settings field {name!r} is in neither {type(settings).__name__} nor "
        f"{type(fraud_settings).__name__}"
    )


def rule_settings_hash(rule: Any, settings: Any, fraud_settings: Any) -> str:
    """`settings_hash` of the settings `rule` runs with: of its `settings_fields` when it
    declares them (an optional attribute: the names of the fields of its own plugin's
    settings, or the fraud plugin's, that it reads), else of both models whole.

    Raises ConfigError when a declared field exists in neither model.
    """
    fields = getattr(rule, "settings_fields", None)
    try:
        return settings_hash(settings, fraud_settings, fields)
    except ValueError as exc:
        raise ConfigError(
            f"fraud rule {rule.name!r}: settings_fields: {exc}; list the names of the "
            'settings fields the rule reads (e.g. settings_fields = ("large_amount",))'
        ) from None
