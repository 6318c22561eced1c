"""Hooks the fraud plugin owns: add rules, react to new alerts.

A third-party package implements them with `@core.hookimpl`; the fraud plugin
adds these specs through `register_hookspecs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import hookspec

if TYPE_CHECKING:
    from plugins.fraud.api import Rule
    from plugins.fraud.models import FraudAlert


@hookspec
def register_fraud_rules() -> list[Rule]:
    """Return fraud rules: objects with `name`, `version`, `severity` and `find(ctx)`.

    `find(ctx)` returns an `Iterable[Finding]`; `version` (e.g. `"1"`, at most 32
    characters) is stored with each alert, and a rule without one stops start-up.

    Rule names are unique across all plugins; `FRAUD_RULES` / `FRAUD_DISABLE_RULES`
    pick among them. Each rule's `RuleContext.settings` are the settings of the
    plugin that returned it (`ctx.fraud_settings` are the fraud plugin's). The
    built-in rules are registered through this hook too.
    """
    return []


@hookspec
def on_fraud_alert(alert: FraudAlert) -> Any:
    """Called once per NEW alert at or above `FRAUD_ALERT_MIN_SEVERITY`, after commit.

    `alert` is a detached `FraudAlert` row (id, rule, rule_version, settings_hash,
    account_id, transaction_id, severity, score, status, evidence, created_at,
    resolved_at). An exception here
    is logged and counted in the task result; it does not undo the alert.
    """


@hookspec
def on_fraud_case_opened(case: Any, alert: FraudAlert) -> Any:
    """Called once per case, after commit, when the case first holds an alert at or above
    `FRAUD_ALERT_MIN_SEVERITY`, with the case and that alert.

    Usually the alert that opens the case (a customer's first open alert since their last
    case closed); a case opened by lower alerts is announced by the first alert at the
    minimum severity that joins it. `case` is a detached `FraudCase` row (id, user_id,
    status, opened_at, announced_at, …). Later alerts joining an announced case do not
    call it. The notifications plugin sends its admin
    e-mail from here (one per case, not per alert). An exception here is logged and counted
    in the task result; it does not undo the case.
    """
