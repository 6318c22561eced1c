"""The built-in checks: `database`, `broker`, `queue_backlog` (see `plugins.health.backlog`)
and `pending_transactions`.

They are registered through `register_health_checks()` like any other plugin's
check, so their context's `settings` are the health plugin's `HealthSettings`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, text

from core import current, data_scope
from core.models import TransactionStatus
from plugins.health.api import CheckContext, CheckResult, HealthCheck
from plugins.health.backlog import REDIS_SCHEMES, QueueBacklogCheck, redis_client
from plugins.health.settings import HealthSettings


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class DatabaseCheck:
    """`SELECT 1` within the timeout (a PostgreSQL statement_timeout, and the runner's deadline)."""

    name = "database"

    def run(self, ctx: CheckContext) -> CheckResult:
        """Time `SELECT 1`; an error or the deadline makes it down."""
        started = time.perf_counter()
        with ctx.db.engine.connect() as conn:
            if ctx.db.dialect == "postgresql":
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(ctx.timeout * 1000)}")
            conn.execute(text("SELECT 1")).scalar_one()
        elapsed = _ms(started)
        return CheckResult(
            "ok",
            f"{ctx.db.dialect} answered SELECT 1 in {elapsed} ms",
            value=elapsed,
            threshold=round(ctx.timeout * 1000, 1),
        )


class BrokerCheck:
    """PING the broker (Redis/Valkey) with socket timeouts; other brokers via kombu."""

    name = "broker"

    def run(self, ctx: CheckContext) -> CheckResult:
        """PING the broker; unreachable → down (with a hint when the app runs its own)."""
        url = str(ctx.app.conf.broker_url)
        parts = urlsplit(url)
        where = f"{parts.hostname}:{parts.port}" if parts.hostname else parts.scheme
        started = time.perf_counter()
        try:
            if parts.scheme in REDIS_SCHEMES or parts.scheme == "unix":
                self._ping_redis(url, ctx.timeout)
            else:
                with ctx.app.connection_for_write() as conn:
                    conn.ensure_connection(
                        max_retries=1, interval_start=0, interval_step=0, timeout=ctx.timeout
                    )
        except Exception as exc:
            hint = ""
            if getattr(ctx.app, "broker", None) is not None:  # REDIS_URL unset: a plugin's broker
                hint = (
                    " (REDIS_URL is unset and the app's own broker is not running: "
                    "`banktasks broker start` starts the embedded one)"
                )
            return CheckResult(
                "down",
                f"broker at {where} unreachable: {type(exc).__name__}: {exc}{hint}",
                value=None,
                threshold=round(ctx.timeout * 1000, 1),
            )
        elapsed = _ms(started)
        return CheckResult(
            "ok",
            f"broker at {where} answered PING in {elapsed} ms",
            value=elapsed,
            threshold=round(ctx.timeout * 1000, 1),
        )

    @staticmethod
    def _ping_redis(url: str, timeout: float) -> None:
        client = redis_client(url, timeout)
        try:
            client.ping()
        finally:
            client.close()


class PendingTransactionsCheck:
    """Pending transactions older than HEALTH_PENDING_MAX_AGE_HOURS → degraded (value = count)."""

    name = "pending_transactions"

    def run(self, ctx: CheckContext) -> CheckResult:
        """Count pending transactions created before `now - pending_max_age_hours`."""
        settings: HealthSettings = ctx.settings
        hours = settings.pending_max_age_hours
        cutoff = ctx.now - timedelta(hours=hours)
        Transaction = current().data.Transaction
        query = select(func.count(), func.min(Transaction.created_at)).where(
            Transaction.status == TransactionStatus.pending, Transaction.created_at < cutoff
        )
        with data_scope() as session:
            count, oldest = session.execute(query).one()
        if not count:
            return CheckResult(
                "ok", f"no pending transaction older than {hours}h", value=0, threshold=hours
            )
        age = ctx.now - oldest
        return CheckResult(
            "degraded",
            f"{count} pending transaction(s) older than {hours}h; the oldest has waited "
            f"{age.days}d {age.seconds // 3600}h (since {oldest.isoformat()})",
            value=count,
            threshold=hours,
        )


BUILTIN_CHECKS = (DatabaseCheck, BrokerCheck, QueueBacklogCheck, PendingTransactionsCheck)


def builtin_checks() -> list[HealthCheck]:
    """One instance of each built-in check, in report order."""
    return [check() for check in BUILTIN_CHECKS]
