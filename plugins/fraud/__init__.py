"""banktasks fraud plugin: set-based fraud rules over transactions, alerts with a lifecycle,
one case per customer, suppressions, an append-only audit trail, back-tests and measured quality.

Public surface:

- for rule authors (`plugins.fraud.api`): `Rule`, `RuleContext`, `Finding`;
- alerts (`plugins.fraud.models`): `FraudAlert`, `FraudWatermark`, `AlertStatus`,
  `SEVERITIES`; their lifecycle: `change_status`, `investigate_alert`,
  `resolve_alert`, `AlertNotFoundError`, `AlertTransitionError`;
- cases (`plugins.fraud.cases`): `FraudCase`, `CaseStatus`, `CaseResolution`,
  `assign_case`, `close_case`, `account_scores`; suppressions (`plugins.fraud.suppression`):
  `FraudSuppression`, `create_suppression`, `lift_suppression`; `FraudAudit`;
- settings: `FraudSettings` (`FRAUD_*`);
- tasks: `analyze_fraud_patterns`, `analyze_fraud_patterns_chunked`, `backtest_fraud_rules`
  (`plugins.fraud.backtest.run_backtest` in-process); quality: `plugins.fraud.planting`,
  `plugins.fraud.evaluate`.

Hooks it owns (`plugins.fraud.hookspecs`): `register_fraud_rules()`,
`on_fraud_alert(alert)`, `on_fraud_case_opened(case, alert)`. Its hook implementations
live in `plugins.fraud.plugin` (the entry point); importing this package registers nothing.
"""

from __future__ import annotations

from plugins.fraud.api import Finding, Rule, RuleContext
from plugins.fraud.cases import account_scores, assign_case, close_case
from plugins.fraud.lifecycle import (
    AlertNotFoundError,
    AlertTransitionError,
    change_status,
    investigate_alert,
    resolve_alert,
)
from plugins.fraud.models import (
    SEVERITIES,
    AlertStatus,
    CaseResolution,
    CaseStatus,
    FraudAlert,
    FraudAudit,
    FraudCase,
    FraudSuppression,
    FraudWatermark,
)
from plugins.fraud.settings import FraudSettings
from plugins.fraud.suppression import create_suppression, lift_suppression
from plugins.fraud.tasks import (
    analyze_fraud_patterns,
    analyze_fraud_patterns_chunked,
    backtest_fraud_rules,
)

__all__ = [
    "SEVERITIES",
    "AlertNotFoundError",
    "AlertStatus",
    "AlertTransitionError",
    "CaseResolution",
    "CaseStatus",
    "Finding",
    "FraudAlert",
    "FraudAudit",
    "FraudCase",
    "FraudSettings",
    "FraudSuppression",
    "FraudWatermark",
    "Rule",
    "RuleContext",
    "account_scores",
    "analyze_fraud_patterns",
    "analyze_fraud_patterns_chunked",
    "assign_case",
    "backtest_fraud_rules",
    "change_status",
    "close_case",
    "create_suppression",
    "investigate_alert",
    "lift_suppression",
    "resolve_alert",
]
