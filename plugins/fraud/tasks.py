"""The fraud tasks: `analyze_fraud_patterns(since=None, until=None)`, every 15 minutes, and
`analyze_fraud_patterns_chunked(since, until, chunks=4)`, the same window cut into time
slices that workers analyse in parallel (a Celery chord whose callback adds them up)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from celery import chord
from pydantic import Field
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from core import RetryPolicy, TaskArgumentError, current, task
from core.db import utcnow
from core.validators import as_utc
from plugins.fraud.backtest import check_backtest, run_backtest
from plugins.fraud.engine import TASK, analyse, resolve_window
from plugins.fraud.slices import MAX_CHUNKS, SliceResult, combine, split_window

DB_CONNECTION_ERRORS = (OperationalError, DisconnectionError, InterfaceError)
"""Database errors worth retrying: lost connections, locked SQLite, server restarts."""

RETRY = RetryPolicy(
    max_retries=3, backoff=15, backoff_max=600, jitter=True, retry_on=DB_CONNECTION_ERRORS
)
"""3 retries with exponential backoff: waits drawn from 0-15, 0-30, 0-60 s (full jitter,
capped at 600 s), about 52 s in all on average and at most 105 s, so a database restart
or failover of ten seconds or so is ridden out in nearly every case."""

CHUNKED_TASK = "fraud.analyze_fraud_patterns_chunked"


def _check_bounds(since: datetime | None, until: datetime | None, task_name: str) -> None:
    """Bounds in order and in range (explicit bounds never touch the database)."""
    try:
        resolve_window(
            None,  # type: ignore[arg-type]  # only the watermark needs a session
            current().settings_for("fraud"),
            since,
            until,
            utcnow(),
            task_name,
        )
    except TaskArgumentError:
        raise
    except (OverflowError, ValueError):  # a bound out of range once in UTC, or the look-back
        raise TaskArgumentError(
            f"{task_name}: since={since} until={until} is out of range; "
            "give times between the years 1 and 9999 UTC"
        ) from None


def check_window(since: datetime | None = None, until: datetime | None = None) -> None:
    """Refuse explicit bounds out of order or out of range in the caller of `.delay()` (and
    again in the worker), so such a request never reaches the broker."""
    if since is None and until is None:
        return  # the watermark decides; nothing to check
    _check_bounds(since, until, TASK)


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


def check_chunked(since: datetime, until: datetime, chunks: int = 4) -> None:
    """Refuse bounds out of order or out of range, and a number of slices outside 1..64 (or
    more slices than the window has microseconds), before anything is sent."""
    _check_bounds(since, until, CHUNKED_TASK)
    split_window(as_utc(since), as_utc(until), chunks)


def _chunked_example() -> dict[str, Any]:
    """`banktasks demo`: the last week in 4 slices."""
    now = utcnow()
    return {"since": (now - timedelta(days=7)).isoformat(), "until": now.isoformat(), "chunks": 4}


def _running_in_worker(name: str | None) -> Any | None:
    """The Celery task executing `name` in a worker, if any; None when the function was
    called directly or eagerly (`.apply()`, `task_always_eager`)."""
    from celery import current_task

    if not current_task or current_task.name != name:
        return None
    request = current_task.request
    if request.called_directly or request.is_eager:
        return None
    return current_task


@task(
    queue="fraud",
    retry=RETRY,
    example=_chunked_example,
    check=check_chunked,
    track_started=True,  # its id shows STARTED until the chord's callback stores the sum
)
def analyze_fraud_patterns_chunked(
    since: datetime, until: datetime, chunks: int = 4
) -> dict[str, Any]:
    """Analyse `[since, until)` as `chunks` equal time slices that workers run in parallel.

    In a worker, this task replaces itself by a Celery chord: one
    `analyze_fraud_patterns(since_i, until_i)` per slice on the fraud queue, then
    `combine_fraud_slices` adds their results up. That sum is stored as this task's
    result (the chord's callback takes over its id), shaped like the result of
    `analyze_fraud_patterns` (since, until, scanned, findings, alerts_created,
    by_rule, emitted, notify_failed) plus `chunks`; the slices store the alerts one
    analysis of the whole window would. No task waits on another. Called in-process
    (or eagerly), the slices run here one after the other. Naive datetimes are taken
    as UTC; the watermark is left alone.
    """
    slices = split_window(as_utc(since), as_utc(until), chunks)
    running = _running_in_worker(analyze_fraud_patterns_chunked.name)
    if running is None:
        return combine(analyse(a, b).as_dict() for a, b in slices)
    header = [analyze_fraud_patterns.s(since=a.isoformat(), until=b.isoformat()) for a, b in slices]
    return running.replace(chord(header, combine_fraud_slices.s()))  # type: ignore[no-any-return]


@task(queue="fraud")
def combine_fraud_slices(
    results: Annotated[list[SliceResult], Field(min_length=1, max_length=MAX_CHUNKS)],
) -> dict[str, Any]:
    """The chord callback of `analyze_fraud_patterns_chunked`: the slices' results added up
    (counts and by_rule summed, since/until spanning the slices, `chunks` = their number)."""
    return combine(results)


def _backtest_example() -> dict[str, Any]:
    """`banktasks demo`: the active rules over the last week."""
    now = utcnow()
    return {"since": (now - timedelta(days=7)).isoformat(), "until": now.isoformat()}


@task(queue="fraud", retry=RETRY, example=_backtest_example, check=check_backtest)
def backtest_fraud_rules(
    since: datetime,
    until: datetime,
    rules: list[str] | None = None,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run fraud rules over `[since, until)` of history and compare with the stored alerts.

    `rules`: rule names (one that is off by default included); None: the active rules.
    `overrides`: setting variables to change for this run (`{"FRAUD_LARGE_AMOUNT":
    "5000"}`), validated as the environment variables would be. Writes no alert, moves
    no watermark, calls no hook. Returns per rule its hits (and their dedup keys), new,
    unchanged and no_longer_raised counts with samples, seconds, version and
    settings_hash; and the totals (see `plugins.fraud.backtest`). A bad window, an
    unknown rule or a bad override is refused before sending (TaskArgumentError).
    """
    return run_backtest(rules, since, until, overrides).as_dict()
