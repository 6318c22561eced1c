"""What fraud contributes to its neighbours: a daily report section and a health check.

Both are plain hook implementations; when reports or health is disabled they are
simply never called. The health plugin's `CheckResult` is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from core import session_scope
from plugins.fraud.lifecycle import CLOSED
from plugins.fraud.models import FraudAlert


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

    name: str = "fraud_unresolved_alerts"

    def run(self, ctx: Any) -> Any:
        """Count stale unresolved alerts on `ctx.db` as of `ctx.now`."""
        from plugins.health import CheckResult

        # ctx.app, not core.current(): health may run checks in threads of its own.
        days = ctx.app.runtime.settings_for("fraud").unresolved_max_age_days
        cutoff = ctx.now - timedelta(days=days)
        with ctx.db.session() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(FraudAlert.created_at)).where(
                    FraudAlert.status.not_in([s.value for s in CLOSED]),
                    FraudAlert.created_at < cutoff,
                )
            ).one()
        if not count:
            return CheckResult(
                status="ok",
                detail=f"no unresolved fraud alerts older than {days} days",
                value=0,
                threshold=days,
            )
        return CheckResult(
            status="degraded",
            detail=(
                f"{count} fraud alert(s) open or investigating for more than {days} days "
                f"(oldest from {oldest.isoformat()}); see `banktasks alerts list --status open`"
            ),
            value=int(count),
            threshold=days,
        )
