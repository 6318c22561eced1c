"""banktasks fraud plugin: set-based fraud rules over transactions, alerts with a lifecycle.

Public surface for rule authors and neighbours: `Rule`, `RuleContext`, `Finding`,
`FraudAlert`, `FraudSettings`, `analyze_fraud_patterns`,
`analyze_fraud_patterns_chunked`. Hooks it owns
(`plugins.fraud.hookspecs`): `register_fraud_rules()`, `on_fraud_alert(alert)`.
"""

from __future__ import annotations

from plugins.fraud.lifecycle import (
    AlertNotFoundError,
    AlertTransitionError,
    change_status,
    investigate_alert,
    resolve_alert,
)
from plugins.fraud.models import SEVERITIES, AlertStatus, FraudAlert, FraudWatermark
from plugins.fraud.plugin import (
    configure_app,
    register_commands,
    register_fraud_rules,
    register_health_checks,
    register_hookspecs,
    register_report_sections,
    register_schedule,
    register_settings,
    register_tasks,
)
from plugins.fraud.rules import Finding, Rule, RuleContext
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
    "configure_app",
    "investigate_alert",
    "register_commands",
    "register_fraud_rules",
    "register_health_checks",
    "register_hookspecs",
    "register_report_sections",
    "register_schedule",
    "register_settings",
    "register_tasks",
    "resolve_alert",
]
