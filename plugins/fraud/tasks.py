"""The fraud task: `analyze_fraud_patterns(since=None, until=None)`, every 15 minutes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from core import RetryPolicy, task
from plugins.fraud.engine import analyse

DB_CONNECTION_ERRORS = (OperationalError, DisconnectionError, InterfaceError)
"""Database errors worth retrying: lost connections, locked SQLite, server restarts."""

RETRY = RetryPolicy(
    max_retries=3, backoff=2, backoff_max=600, jitter=True, retry_on=DB_CONNECTION_ERRORS
)


@task(queue="fraud", retry=RETRY, example={})
def analyze_fraud_patterns(
    since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Run the fraud rules over transactions in `[since, until)` and store new alerts.

    Without arguments: from the stored watermark minus FRAUD_OVERLAP_HOURS (first
    run: FRAUD_INITIAL_LOOKBACK_DAYS back) up to now, then the watermark moves to
    now. With `since`/`until`: that window only (the watermark is left alone);
    `until` defaults to now. Naive datetimes are taken as UTC. Alerts are unique per
    (rule, dedup key), so re-running any window creates nothing new. Returns
    since, until, scanned, alerts_created and by_rule (rule → new alerts).
    """
    return analyse(since, until).as_dict()
