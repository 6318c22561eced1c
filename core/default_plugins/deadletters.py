"""Default plugin `deadletters`: tasks that failed for good land in a table to act on.

It is built on the core hooks `on_task_failed` and `on_message_rejected`, like any
plugin could be.

A task fails for good when its retries are exhausted, when it raised an error
its retry policy does not list, or when its arguments were invalid. The worker
records each such failure once (unique per task id) in `core_failed_tasks`;
`banktasks failed list` shows them and `banktasks failed retry ID` sends the
same task with the same arguments again. Arguments whose JSON is bigger than
`BANKTASKS_MAX_MESSAGE_BYTES` are not kept (a marker says how big they were).

A message the worker set aside unread (not a task message it can run: see
`core.poison`) is a dead letter too, with the reason "undecodable message",
"malformed message", "oversized message" or "unknown task": one row per message
(its task id, else the sha256 of the message), with what was wrong and its first
bytes (redacted). There is no task to retry for those.

For health's `register_health_checks` it adds the check `dead_letters`: degraded
when more than `DEADLETTERS_HEALTH_MAX_NEW` dead letters (default 0: any) arrived in
the last `DEADLETTERS_HEALTH_WINDOW_MINUTES` (default 60, twice the period of the
scheduled health check, so each one is seen). It returns a plain dict: health is
not imported.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import click
from celery.exceptions import TimeLimitExceeded
from pydantic import Field
from pydantic_core import to_jsonable_python
from sqlalchemy import JSON, Integer, String, Text, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from core import (
    PluginSettings,
    TaskArgumentError,
    TaskTimeLimitExceeded,
    current,
    current_app,
    get_logger,
    hookimpl,
)
from core.db import Base, UTCDateTime, utcnow
from core.logging import redact_text
from core.poison import MALFORMED as MALFORMED
from core.poison import OVERSIZED as OVERSIZED
from core.poison import REASONS
from core.poison import UNDECODABLE as UNDECODABLE
from core.poison import UNKNOWN_TASK as UNKNOWN_TASK

log = get_logger(__name__)

EXHAUSTED = "retries exhausted"
PERMANENT = "permanent error"
INVALID = "invalid arguments"
TIME_LIMIT = "time limit"
REJECTED = frozenset(REASONS)
"""The reasons of messages set aside unread: there is no task to retry."""
UNKNOWN = "unknown"
"""Task name (and plugin) of a dead letter whose message names no task."""
TRUNCATED = "__truncated__"
"""The only key of stored arguments that were too big to keep: {TRUNCATED: {json_bytes, limit}}."""
MAX_ERROR_CHARS = 6000
REJECTED_KEY_PREFIX = "rejected:"
CHECK_NAME = "dead_letters"


class DeadLettersSettings(PluginSettings):
    """Thresholds of the health check `dead_letters`."""

    health_window_minutes: int = Field(
        60,
        ge=1,
        le=366 * 24 * 60,
        description=(
            "The health check `dead_letters` counts dead letters stored in the last this "
            "many minutes (1 to 527040: a year); keep it longer than the period of the "
            "scheduled health check so that none goes unseen"
        ),
    )
    health_max_new: int = Field(
        0,
        ge=0,
        description=(
            "More new dead letters than this within DEADLETTERS_HEALTH_WINDOW_MINUTES make "
            "the health check `dead_letters` degraded (default 0: any new one)"
        ),
    )


class FailedTask(Base):
    """One task that failed for good."""

    __tablename__ = "core_failed_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    task_name: Mapped[str] = mapped_column(String(200), index=True)
    plugin: Mapped[str] = mapped_column(String(100))
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(32))
    error_type: Mapped[str] = mapped_column(String(200))
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    retried_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retry_task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view for the CLI."""
        return {
            "id": self.id,
            "task_id": self.task_id,
            "task": self.task_name,
            "reason": self.reason,
            "error": f"{self.error_type}: {self.error}",
            "attempts": self.attempts,
            "failed_at": self.failed_at.isoformat(),
            "retried_at": self.retried_at.isoformat() if self.retried_at else None,
            "retry_task_id": self.retry_task_id,
        }


def classify(task: Any, exc: BaseException) -> str:
    """Why the task failed for good: invalid arguments, a time limit, retries exhausted,
    or permanent."""
    if isinstance(exc, TaskArgumentError):
        return INVALID
    if isinstance(exc, TaskTimeLimitExceeded | TimeLimitExceeded):
        return TIME_LIMIT
    retry_on = tuple(getattr(task, "autoretry_for", ()) or ())
    if retry_on and isinstance(exc, retry_on):
        return EXHAUSTED
    return PERMANENT


@hookimpl
def on_task_failed(task: Any, task_id: str, exception: BaseException, kwargs: Any) -> None:
    """Store the failure as a dead letter."""
    record_failure(task, task_id, exception, kwargs)


def kept_kwargs(kwargs: Any) -> dict[str, Any]:
    """The arguments as stored: as sent (JSON; a datetime when eager), or, when their JSON
    is bigger than BANKTASKS_MAX_MESSAGE_BYTES, a marker saying how big they were."""
    data: dict[str, Any] = to_jsonable_python(dict(kwargs or {}), fallback=str)
    size = len(json.dumps(data, separators=(",", ":")).encode())
    limit = current().settings.banktasks_max_message_bytes
    if size > limit:
        return {TRUNCATED: {"json_bytes": size, "limit": limit}}
    return data


def record_failure(task: Any, task_id: str, exc: BaseException, kwargs: dict[str, Any]) -> None:
    """Store one dead letter (at most once per task id); never raises."""
    row = FailedTask(
        task_id=task_id,
        task_name=task.name,
        plugin=getattr(task, "plugin", task.name.split(".", 1)[0]),
        kwargs=kept_kwargs(kwargs),
        reason=classify(task, exc),
        error_type=type(exc).__name__,
        error=redact_text(str(exc))[:2000],
        attempts=_attempts(task.request.retries),
    )
    _store(row)


@hookimpl
def on_message_rejected(queue: str, reason: str, message: dict[str, Any]) -> None:
    """Store the message the worker set aside as a dead letter."""
    record_rejection(queue, reason, message)


def rejected_key(identity: str) -> str:
    """The dead-letter key of a message set aside unread, from its task id (else its
    fingerprint). Never the task id itself: whoever writes a bad message with the id of a
    real task must not take the place of that task's own dead letter."""
    return REJECTED_KEY_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:55]


def record_rejection(queue: str, reason: str, message: dict[str, Any]) -> None:
    """Store one dead letter for a message set aside unread (at most once per message:
    see `rejected_key`); never raises."""
    name = message.get("task") or UNKNOWN
    task = current_app().tasks.get(name)
    task_id = message.get("id")
    summary = (
        f"{message.get('detail') or reason}. Queue {queue!r}, {message.get('size', 0)} bytes, "
        f"sha256 {message.get('fingerprint')}"
        + (f", task id {task_id!r}" if task_id else "")
        + f". It starts with: {message.get('excerpt', '')!r}"
    )
    row = FailedTask(
        task_id=rejected_key(task_id or str(message.get("fingerprint"))),
        task_name=name[:200],
        plugin=getattr(task, "plugin", UNKNOWN),
        kwargs={},
        reason=reason[:32],
        error_type="RejectedMessage",
        error=redact_text(summary)[:MAX_ERROR_CHARS],
        attempts=0,
    )
    _store(row)


def _store(row: FailedTask) -> None:
    try:
        with current().db.session() as session:
            session.add(row)
    except IntegrityError:
        log.info("dead_letter_exists", failed_task_id=row.task_id, reason=row.reason)
    except SQLAlchemyError as error:  # the database may be what failed
        cause = getattr(error, "orig", None) or error  # without the statement's parameters
        log.error(
            "dead_letter_not_stored",
            failed_task_id=row.task_id,
            task=row.task_name,
            reason=row.reason,
            error=f"{type(error).__name__}: {cause}"[:500],
        )
    else:
        log.warning(
            "task_dead_lettered",
            failed_task_id=row.task_id,
            task=row.task_name,
            reason=row.reason,
            attempts=row.attempts,
        )


def _attempts(retries: Any) -> int:
    """Runs so far, from the message's `retries` header (a forged one counts as one run)."""
    if type(retries) is int and 0 <= retries < 10_000:
        return retries + 1
    return 1


def list_failed(limit: int = 50, include_retried: bool = False) -> list[FailedTask]:
    """The most recent dead letters, newest first."""
    query = select(FailedTask).order_by(FailedTask.id.desc()).limit(limit)
    if not include_retried:
        query = query.where(FailedTask.retried_at.is_(None))
    with current().db.session() as session:
        return list(session.scalars(query))


def retry_failed(failed_id: int) -> str:
    """Send a dead letter's task again with the same arguments; return the new task id."""
    app = current_app()
    with current().db.session() as session:
        row = session.get(FailedTask, failed_id)
        if row is None:
            raise LookupError(f"no failed task with id {failed_id} (see banktasks failed list)")
        if row.retried_at is not None:
            raise LookupError(f"failed task {failed_id} was already retried as {row.retry_task_id}")
        if row.reason in REJECTED:
            raise LookupError(
                f"failed task {failed_id} is a message the worker set aside unread "
                f"({row.reason}): there is no task to retry"
            )
        if TRUNCATED in (row.kwargs or {}):
            size = row.kwargs[TRUNCATED].get("json_bytes")
            raise LookupError(
                f"failed task {failed_id}: its arguments ({size} bytes of JSON) were too big "
                "to keep; send the task again from where it came from"
            )
        if row.task_name not in app.tasks:
            raise LookupError(f"task {row.task_name} is not registered: is its plugin enabled?")
        result = app.tasks[row.task_name].apply_async(kwargs=row.kwargs)
        row.retried_at = utcnow()
        row.retry_task_id = result.id
        return str(result.id)


@click.group("failed")
def failed_group() -> None:
    """Tasks that failed for good (dead letters): list them, send them again."""


@failed_group.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--all", "include_retried", is_flag=True, help="Include already retried ones.")
@click.option("--json", "as_json", is_flag=True)
def failed_list(limit: int, include_retried: bool, as_json: bool) -> None:
    """Show dead letters, newest first."""
    rows = [row.as_dict() for row in list_failed(limit, include_retried)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no failed tasks")
    for row in rows:
        line = (
            f"{row['id']:>5}  {row['failed_at'][:19]}  {row['task']}  [{row['reason']}, "
            f"{row['attempts']} attempt(s)]  {row['error'][:120]}"
        )
        click.echo("".join(c if c.isprintable() else repr(c)[1:-1] for c in line))


@failed_group.command("retry")
@click.argument("failed_ids", nargs=-1, type=int, required=True)
def failed_retry(failed_ids: tuple[int, ...]) -> None:
    """Send the task of each dead letter again, with the same arguments."""
    for failed_id in failed_ids:
        try:
            click.echo(f"{failed_id}: sent again as {retry_failed(failed_id)}")
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks failed list|retry`."""
    cli.add_command(failed_group)


@hookimpl
def register_settings() -> tuple[str, type[DeadLettersSettings]]:
    """`DEADLETTERS_HEALTH_WINDOW_MINUTES`, `DEADLETTERS_HEALTH_MAX_NEW`."""
    return "deadletters", DeadLettersSettings


class NewDeadLettersCheck:
    """Health check `dead_letters`: new dead letters within a window, above a threshold."""

    name = CHECK_NAME

    def run(self, ctx: Any) -> dict[str, Any]:
        """Count dead letters stored since `ctx.now` minus the window (this plugin's
        settings, `ctx.settings`); more than DEADLETTERS_HEALTH_MAX_NEW → degraded."""
        window = ctx.settings.health_window_minutes
        allowed = ctx.settings.health_max_new
        since = ctx.now - timedelta(minutes=window)
        query = select(func.count(), func.max(FailedTask.failed_at)).where(
            FailedTask.failed_at >= since
        )
        with ctx.db.session() as session:
            count, newest = session.execute(query).one()
            by_task = session.execute(
                select(FailedTask.task_name, func.count())
                .where(FailedTask.failed_at >= since)
                .group_by(FailedTask.task_name)
                .order_by(func.count().desc(), FailedTask.task_name)
                .limit(5)
            ).all()
        if count <= allowed:
            return {
                "status": "ok",
                "detail": f"{count} dead letter(s) in the last {window} min (at most {allowed})",
                "value": int(count),
                "threshold": allowed,
            }
        tasks = ", ".join(f"{name}: {n}" for name, n in by_task)
        return {
            "status": "degraded",
            "detail": (
                f"{count} dead letter(s) in the last {window} min, more than {allowed} "
                f"(newest {newest.isoformat()}; {tasks}); see `banktasks failed list`"
            ),
            "value": int(count),
            "threshold": allowed,
        }


@hookimpl
def register_health_checks() -> list[Any]:
    """Health's hook: the `dead_letters` check."""
    return [NewDeadLettersCheck()]
