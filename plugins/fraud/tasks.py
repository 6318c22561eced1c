"""The fraud task: `analyze_fraud_patterns(since=None, until=None)`, every 15 minutes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from core import RetryPolicy, TaskArgumentError, current, task
from core.db import utcnow
from plugins.fraud.engine import analyse, resolve_window

DB_CONNECTION_ERRORS = (OperationalError, DisconnectionError, InterfaceError)
"""Database errors worth retrying: lost connections, locked SQLite, server restarts."""

RETRY = RetryPolicy(
    max_retries=3, backoff=15, backoff_max=600, jitter=True, retry_on=DB_CONNECTION_ERRORS
)
"""3 retries with exponential backoff: waits drawn from 0-15, 0-30, 0-60 s (full jitter,
capped at 600 s), about 52 s in all on average and at most 105 s, so a database restart
or failover of ten seconds or so is ridden out in nearly every case."""


def check_window(since: datetime | None = None, until: datetime | None = None) -> None:
    """Refuse explicit bounds out of order or out of range in the caller of `.delay()` (and
    again in the worker), so such a request never reaches the broker."""
    if since is None and until is None:
        return  # the watermark decides; nothing to check
    try:  # explicit bounds never touch the session (only the watermark needs it)
        resolve_window(None, current().settings_for("fraud"), since, until, utcnow())  # type: ignore[arg-type]
    except OverflowError:
        raise TaskArgumentError(
            f"fraud.analyze_fraud_patterns: since={since} until={until} is out of range; "
            "give times between the years 1 and 9999 UTC"
        ) from None


@task(queue="fraud", retry=RETRY, example={}, check=check_window, track_started=True)
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
