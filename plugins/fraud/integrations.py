"""What fraud contributes to hooks other plugins own: a report section and a health check.

reports' `register_report_sections(report_date)` and health's
`register_health_checks()`. When reports or health is disabled (or not
installed) these implementations are simply never called. No other plugin is
imported: the health check returns a plain dict `{"status", "detail", "value",
"threshold"}` and reads its threshold from the context it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from core import hookimpl, session_scope
from plugins.fraud.lifecycle import CLOSED
from plugins.fraud.models import FraudAlert

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


@hookimpl
def register_health_checks() -> list[Any]:
    """Health's hook: the `fraud_unresolved_alerts` check."""
    return [UnresolvedAlertsCheck()]
