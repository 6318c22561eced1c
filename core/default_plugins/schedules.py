"""Default plugin `schedules`: when each beat entry last ran and last succeeded.

Every beat entry (`app.conf.beat_schedule`, from the plugins' `register_schedule`)
gets a header naming it (`banktasks_schedule: <entry>`, added by `configure_app` to
the entry's options), so a worker knows which entry a message came from: a manual
`.delay()` of the same task does not count, a retry of a scheduled run keeps the
header and does. The worker writes to a Redis hash `banktasks:schedules:<entry>`
on the broker, where every process (worker, beat, `banktasks`, the health check)
sees it: `last_run` (a run started), `last_success`, `last_failure` and
`last_error` (failed for good, through the core hook `on_task_failed`),
`last_status` and `last_task_id`. `first_seen` is when tracking began (beat's
start, or the first check): an entry that never ran is late from there.

An entry is late when it has not succeeded by its first due time after its last
success (or `first_seen`) plus `SCHEDULES_GRACE_SECONDS`: for a crontab, the due
times of the cron expression (UTC); for `every=`, the last success plus the
period. Health's `register_health_checks` gets the check `missed_schedules`
(degraded while an entry is late; a plain dict, health is not imported), and
`banktasks schedules` lists each entry with its last run, last success and next
due time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from celery import signals
from celery.schedules import crontab
from celery.schedules import schedule as interval_schedule
from pydantic import Field

from core import BanktasksTask, PluginSettings, current_app, get_logger, hookimpl, message_header
from core.db import utcnow
from core.logging import redact_text

PLUGIN = "schedules"
HEADER = "banktasks_schedule"
"""The message header that names the beat entry a task was sent for."""
BEAT_HEADER = "celery_beat_task"
"""The header Celery beat (5.5+) puts on every message it sends."""
KEY_PREFIX = "banktasks:schedules:"
CHECK_NAME = "missed_schedules"
FIELDS = (
    "first_seen",
    "last_run",
    "last_status",
    "last_task_id",
    "last_success",
    "last_failure",
    "last_error",
)
MAX_ERROR_CHARS = 300
log = get_logger(__name__)


class SchedulesSettings(PluginSettings):
    """`SCHEDULES_GRACE_SECONDS`: how late a periodic task may succeed before it is missed."""

    grace_seconds: int = Field(
        1800,
        ge=0,
        le=7 * 86400,
        description=(
            "Seconds a beat entry may take past its due time to succeed before the health "
            "check `missed_schedules` turns degraded (0 to 604800; the default 1800 means "
            "no daily report by 00:30 UTC is missed)"
        ),
    )


def key(entry: str) -> str:
    """The Redis hash of one beat entry's runs."""
    return KEY_PREFIX + entry


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ------------------------------------------------------------------------- what ran


def entry_of(task: Any) -> str | None:
    """The beat entry the running task was sent for, or None (not sent by beat).

    The `banktasks_schedule` header names it. A message from beat without it (sent
    before this plugin tagged the entries) is matched by task name and arguments,
    when exactly one entry has both.
    """
    request = task.request
    name = message_header(request, HEADER)
    schedule = task.app.conf.beat_schedule or {}
    if isinstance(name, str) and name in schedule:
        return name
    if not message_header(request, BEAT_HEADER):
        return None
    kwargs = dict(request.kwargs or {})
    found = [
        entry
        for entry, conf in schedule.items()
        if conf.get("task") == task.name and dict(conf.get("kwargs") or {}) == kwargs
    ]
    return found[0] if len(found) == 1 else None


def record(app: Any, entry: str, **fields: str) -> None:
    """Write fields of one entry's hash; never raises (a lost write is logged)."""
    try:
        app.redis_client().hset(key(entry), mapping=fields)
    except Exception as exc:  # the broker may be what is down
        log.warning("schedule_run_not_recorded", entry=entry, error=f"{type(exc).__name__}: {exc}")


def _ours(app: Any, sender: Any) -> bool:
    return isinstance(sender, BanktasksTask) and sender.app is app


def _connect(app: Any) -> None:
    """Record runs in this app's worker, and `first_seen` when its beat starts."""

    def started(sender: Any = None, task_id: Any = None, **_: Any) -> None:
        if _ours(app, sender) and (entry := entry_of(sender)):
            record(
                app,
                entry,
                last_run=_iso(utcnow()),
                last_status="running",
                last_task_id=str(task_id),
            )

    def succeeded(sender: Any = None, **_: Any) -> None:
        if _ours(app, sender) and (entry := entry_of(sender)):
            record(app, entry, last_success=_iso(utcnow()), last_status="succeeded")

    def beat_started(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            mark_seen(app, utcnow())

    receivers = [
        (signals.task_prerun, started),
        (signals.task_success, succeeded),
        (signals.beat_init, beat_started),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=True)
    app.__dict__["_banktasks_schedules_receivers"] = receivers  # keeps them alive


def mark_seen(app: Any, now: datetime) -> None:
    """Set `first_seen` of every entry that has none (tracking begins now)."""
    client = app.redis_client()
    with client.pipeline() as pipe:
        for entry in app.conf.beat_schedule or {}:
            pipe.hsetnx(key(entry), "first_seen", _iso(now))
        pipe.execute()


# ------------------------------------------------------------------------- when due


def next_due(schedule: Any, after: datetime) -> datetime | None:
    """The first due time strictly after `after` (crontab: the next matching minute,
    UTC; an interval: `after` + the period); None for a schedule of another kind."""
    if isinstance(schedule, crontab):
        last, delta, _now = schedule.remaining_delta(after)
        return (last + delta).astimezone(UTC)  # type: ignore[no-any-return]
    if isinstance(schedule, timedelta):
        return after + schedule
    if isinstance(schedule, interval_schedule):
        return after + schedule.run_every
    return None


def describe(schedule: Any) -> str:
    """`cron 0 0 * * *` or `every 30s` (what `banktasks schedules` shows)."""
    if isinstance(schedule, crontab):
        parts = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        return "cron " + " ".join(str(getattr(schedule, f"_orig_{p}", "?")) for p in parts)
    period = schedule.run_every if isinstance(schedule, interval_schedule) else schedule
    if isinstance(period, timedelta):
        return f"every {period.total_seconds():g}s"
    return str(schedule)


@dataclass(frozen=True)
class EntryStatus:
    """One beat entry as of `now`: its runs, when it was due, and whether it is late."""

    entry: str
    task: str
    schedule: str
    last_run: datetime | None
    last_status: str | None
    last_success: datetime | None
    last_failure: datetime | None
    last_error: str | None
    first_seen: datetime | None
    due: datetime | None
    """The first due time after the last success (or first_seen): success is expected
    by `due` plus the grace time."""
    next_due: datetime | None
    late: bool

    @property
    def status(self) -> str:
        """`late`, `failing` (its last run failed, not late yet) or `ok`."""
        if self.late:
            return "late"
        return "failing" if self.last_status == "failed" else "ok"

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view (times in ISO 8601, UTC)."""
        data = asdict(self)
        data = {k: _iso(v) if isinstance(v, datetime) else v for k, v in data.items()}
        data["status"] = self.status
        return data


def evaluate(
    entry: str, conf: Mapping[str, Any], state: Mapping[str, Any], now: datetime, grace: float
) -> EntryStatus:
    """Where one entry stands at `now`, from its hash `state` and grace seconds: late once
    `now` is past its first due time after the last success (or first_seen) plus grace."""
    times = {name: _moment(state.get(name)) for name in FIELDS if name != "last_error"}
    schedule = conf.get("schedule")
    since = times["last_success"] or times["first_seen"] or now
    due = next_due(schedule, since)
    if isinstance(schedule, crontab):
        upcoming = next_due(schedule, now)
    else:
        last = max((t for t in (times["last_run"], times["first_seen"]) if t), default=now)
        upcoming = next_due(schedule, last)
    error = state.get("last_error")
    status = state.get("last_status")
    return EntryStatus(
        entry=entry,
        task=str(conf.get("task")),
        schedule=describe(schedule),
        last_run=times["last_run"],
        last_status=status.decode() if isinstance(status, bytes) else status,
        last_success=times["last_success"],
        last_failure=times["last_failure"],
        last_error=error.decode() if isinstance(error, bytes) else error,
        first_seen=times["first_seen"],
        due=due,
        next_due=upcoming,
        late=due is not None and now > due + timedelta(seconds=grace),
    )


def _decoded(raw: Mapping[Any, Any]) -> dict[str, Any]:
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def statuses(app: Any, now: datetime, grace: float) -> list[EntryStatus]:
    """Every beat entry of the app, in name order, as of `now`."""
    schedule = app.conf.beat_schedule or {}
    names = sorted(schedule)
    client = app.redis_client()
    with client.pipeline() as pipe:
        for name in names:
            pipe.hgetall(key(name))
        states = pipe.execute()
    return [
        evaluate(name, schedule[name], _decoded(state), now, grace)
        for name, state in zip(names, states, strict=True)
    ]


# ------------------------------------------------------------------------------ hooks


@hookimpl
def register_settings() -> tuple[str, type[SchedulesSettings]]:
    """`SCHEDULES_GRACE_SECONDS`."""
    return PLUGIN, SchedulesSettings


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Tag each beat entry's messages with the entry's name; record runs in workers."""
    for name, conf in (app.conf.beat_schedule or {}).items():
        options = conf.setdefault("options", {})
        options["headers"] = {**(options.get("headers") or {}), HEADER: name}
    _connect(app)


@hookimpl
def on_task_failed(task: Any, task_id: str, exception: BaseException, kwargs: Any) -> None:
    """A scheduled run that failed for good: its time and error."""
    entry = entry_of(task)
    if entry:
        error = redact_text(f"{type(exception).__name__}: {exception}")[:MAX_ERROR_CHARS]
        record(
            task.app,
            entry,
            last_failure=_iso(utcnow()),
            last_status="failed",
            last_error=error,
            last_task_id=str(task_id),
        )


@dataclass(frozen=True)
class MissedSchedulesCheck:
    """Health check `missed_schedules`: degraded while a beat entry is late.

    Late: no success by its first due time after the last success (or after tracking
    began) plus SCHEDULES_GRACE_SECONDS. Returns a plain dict (health is not imported).
    """

    name: str = CHECK_NAME

    def run(self, ctx: Any) -> dict[str, Any]:
        """Look at every entry as of `ctx.now`; `ctx.settings` are this plugin's settings."""
        grace = ctx.settings.grace_seconds
        mark_seen(ctx.app, ctx.now)  # an entry never seen before is tracked from now
        found = statuses(ctx.app, ctx.now, grace)
        late = [s for s in found if s.late]
        if not late:
            return {
                "status": "ok",
                "detail": f"{len(found)} beat entries, none late (grace {grace}s)",
                "value": 0,
                "threshold": grace,
            }
        return {
            "status": "degraded",
            "detail": "; ".join(_late_detail(s) for s in late) + " (see `banktasks schedules`)",
            "value": len(late),
            "threshold": grace,
        }


def _late_detail(status: EntryStatus) -> str:
    since = "never succeeded"
    if status.last_success:
        since = f"last success {_cell(status.last_success)}"
    text = f"{status.entry} ({status.task}): {since}, due {_cell(status.due)} UTC"
    if status.last_status == "failed" and status.last_error:
        text += f", last run failed: {status.last_error}"
    elif status.last_run is None:
        text += ", never ran (is beat running?)"
    return text


@hookimpl
def register_health_checks() -> list[Any]:
    """Health's hook: the `missed_schedules` check."""
    return [MissedSchedulesCheck()]


# -------------------------------------------------------------------------------- cli


def _cell(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "never"


@click.command("schedules")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def schedules_command(as_json: bool) -> None:
    """List the beat entries: task, schedule, last run, last success, next due (UTC).

    STATUS is `late` (no success by its due time plus SCHEDULES_GRACE_SECONDS),
    `failing` (its last run failed) or `ok`.
    """
    app = current_app()
    grace = app.runtime.settings_for(PLUGIN).grace_seconds
    found = statuses(app, utcnow(), grace)
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in found], indent=2))
        return
    if not found:
        click.echo("no beat entries")
        return
    header = ("ENTRY", "TASK", "SCHEDULE", "LAST RUN", "LAST SUCCESS", "NEXT DUE", "STATUS")
    rows = [
        (
            s.entry,
            s.task,
            s.schedule,
            _cell(s.last_run),
            _cell(s.last_success),
            _cell(s.next_due) if s.next_due else "-",
            s.status,
        )
        for s in found
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks schedules [--json]`."""
    cli.add_command(schedules_command)
