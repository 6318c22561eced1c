"""What fraud contributes to hooks other plugins own: a report section, a health check
and metrics.

reports' `register_report_sections(report_date)`, health's
`register_health_checks()` and the metrics default plugin's `collect_metrics(ctx)`.
When reports, health or metrics is disabled (or not installed) these
implementations are simply never called. No other plugin is imported: the health
check returns a plain dict `{"status", "detail", "value", "threshold"}` and reads
its threshold from the context it is given; the metrics are plain dicts too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from core import hookimpl, session_scope
from plugins.fraud.lifecycle import CLOSED
from plugins.fraud.models import FraudAlert
from plugins.fraud.rules import collect_rules, select_rules

CHECK_NAME = "fraud_unresolved_alerts"


def report_section(report_date: date) -> tuple[str, dict[str, Any]]:
    """("fraud", {"alerts_opened": n, "by_rule": {...}, "by_severity": {...}}) for that UTC day."""
    start = datetime.combine(report_date, time(0), tzinfo=UTC)
    end = start + timedelta(days=1)
    in_day = (FraudAlert.created_at >= start, FraudAlert.created_at < end)
    with session_scope() as session:
        by_rule = dict(
            session.execute(
                select(FraudAlert.rule, func.count())
                .where(*in_day)
                .group_by(FraudAlert.rule)
                .order_by(FraudAlert.rule)
            ).all()
        )
        by_severity = dict(
            session.execute(
                select(FraudAlert.severity, func.count())
                .where(*in_day)
                .group_by(FraudAlert.severity)
                .order_by(FraudAlert.severity)
            ).all()
        )
    return "fraud", {
        "alerts_opened": sum(by_rule.values()),
        "by_rule": by_rule,
        "by_severity": by_severity,
    }


@dataclass(frozen=True)
class UnresolvedAlertsCheck:
    """Health check `fraud_unresolved_alerts`: open/investigating alerts older than N days.

    Degraded when there is any; N is FRAUD_UNRESOLVED_MAX_AGE_DAYS (default 7).
    """

    name: str = CHECK_NAME

    def run(self, ctx: Any) -> dict[str, Any]:
        """Count stale unresolved alerts on `ctx.db` as of `ctx.now`.

        `ctx.settings` are the fraud plugin's settings (health gives each check the
        settings of the plugin that registered it). Returns `{"status": "ok" |
        "degraded", "detail", "value": count, "threshold": days}`.
        """
        days = ctx.settings.unresolved_max_age_days
        cutoff = ctx.now - timedelta(days=days)
        with ctx.db.session() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(FraudAlert.created_at)).where(
                    FraudAlert.status.not_in([s.value for s in CLOSED]),
                    FraudAlert.created_at < cutoff,
                )
            ).one()
        if not count:
            return {
                "status": "ok",
                "detail": f"no unresolved fraud alerts older than {days} days",
                "value": 0,
                "threshold": days,
            }
        return {
            "status": "degraded",
            "detail": (
                f"{count} fraud alert(s) open or investigating for more than {days} days "
                f"(oldest from {oldest.isoformat()}); see `banktasks alerts list --status open`"
            ),
            "value": int(count),
            "threshold": days,
        }


@hookimpl
def register_report_sections(report_date: date) -> tuple[str, dict[str, Any]]:
    """Reports' hook: the `fraud` section, alerts opened on `report_date` (UTC)."""
    return report_section(report_date)


def alert_samples(session: Any, rules: dict[str, str]) -> list[dict[str, Any]]:
    """`alerts_total{rule, severity}` (every alert ever created: rows are never deleted)
    and `alerts_unresolved{rule}` (open or investigating). `rules` (selected rule → its
    severity) appear with 0 before their first alert."""
    counts = session.execute(
        select(FraudAlert.rule, FraudAlert.severity, FraudAlert.status, func.count()).group_by(
            FraudAlert.rule, FraudAlert.severity, FraudAlert.status
        )
    ).all()
    created: dict[tuple[str, str], int] = {}
    unresolved = dict.fromkeys(rules, 0)
    closed = {s.value for s in CLOSED}
    for rule, severity, status, count in counts:
        created[(rule, severity)] = created.get((rule, severity), 0) + count
        if status not in closed:
            unresolved[rule] = unresolved.get(rule, 0) + count
    seen = {rule for rule, _ in created}
    samples = [
        {
            "name": "alerts",
            "type": "counter",
            "help": "Fraud alerts created, by rule and severity",
            "labels": {"rule": rule, "severity": severity},
            "value": count,
        }
        for (rule, severity), count in sorted(created.items())
    ]
    samples += [
        {
            "name": "alerts",
            "type": "counter",
            "help": "Fraud alerts created, by rule and severity",
            "labels": {"rule": rule, "severity": severity},
            "value": 0,
        }
        for rule, severity in sorted(rules.items())
        if rule not in seen
    ]
    samples += [
        {
            "name": "alerts_unresolved",
            "help": "Fraud alerts open or under investigation, by rule",
            "labels": {"rule": rule},
            "value": count,
        }
        for rule, count in sorted(unresolved.items())
    ]
    return samples


@hookimpl
def collect_metrics(ctx: Any) -> list[dict[str, Any]]:
    """Metrics' hook (at scrape time): fraud alerts by rule and severity, unresolved by rule."""
    selected = select_rules(collect_rules(ctx.app.runtime.plugins), ctx.settings)
    rules = {c.name: str(getattr(c.obj, "severity", "unknown")) for c in selected}
    with ctx.db.session() as session:
        return alert_samples(session, rules)


@hookimpl
def register_health_checks() -> list[Any]:
    """Health's hook: the `fraud_unresolved_alerts` check."""
    return [UnresolvedAlertsCheck()]
