"""banktasks fraud plugin: set-based fraud rules over transactions, alerts with a lifecycle.

Public surface:

- for rule authors (`plugins.fraud.api`): `Rule`, `RuleContext`, `Finding`;
- alerts (`plugins.fraud.models`): `FraudAlert`, `FraudWatermark`, `AlertStatus`,
  `SEVERITIES`; their lifecycle: `change_status`, `investigate_alert`,
  `resolve_alert`, `AlertNotFoundError`, `AlertTransitionError`;
- settings: `FraudSettings` (`FRAUD_*`);
- tasks: `analyze_fraud_patterns`, `analyze_fraud_patterns_chunked`.

Hooks it owns (`plugins.fraud.hookspecs`): `register_fraud_rules()`,
`on_fraud_alert(alert)`. Its hook implementations live in `plugins.fraud.plugin`
(the entry point); importing this package registers nothing.
"""

from __future__ import annotations

from plugins.fraud.api import Finding, Rule, RuleContext
from plugins.fraud.lifecycle import (
    AlertNotFoundError,
    AlertTransitionError,
    change_status,
    investigate_alert,
    resolve_alert,
)
from plugins.fraud.models import SEVERITIES, AlertStatus, FraudAlert, FraudWatermark
from plugins.fraud.settings import FraudSettings
from plugins.fraud.tasks import analyze_fraud_patterns, analyze_fraud_patterns_chunked

__all__ = [
    "SEVERITIES",
    "AlertNotFoundError",
    "AlertStatus",
    "AlertTransitionError",
    "Finding",
    "FraudAlert",
    "FraudSettings",
    "FraudWatermark",
    "Rule",
    "RuleContext",
    "analyze_fraud_patterns",
    "analyze_fraud_patterns_chunked",
    "change_status",
    "investigate_alert",
    "resolve_alert",
]
