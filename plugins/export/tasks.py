"""`export_transaction_data`: stream a user's transactions into a file, record it, announce it."""

from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, BinaryIO, cast

import sqlalchemy.exc as sa_exc
from pydantic import Field
from sqlalchemy import select, update

from core import (
    RetryPolicy,
    SubmitLimit,
    TaskArgumentError,
    current,
    data_scope,
    get_logger,
    task,
)
from core.db import to_micros, utcnow
from core.files import atomic_writer
from core.validators import check_format, is_name
from plugins.export.api import ExportFormat
from plugins.export.models import ExportRecord
from plugins.export.rows import COLUMNS, stream_rows

log = get_logger(__name__)

UserId = Annotated[int, Field(gt=0, lt=2**63)]
"""A user id: positive, and small enough for the database's 64-bit integer columns."""

RETRY = RetryPolicy(
    max_retries=5,
    backoff=60,
    backoff_max=600,
    jitter=True,
    retry_on=(
        sa_exc.OperationalError,  # connection refused/lost, SQLite "database is locked"
        sa_exc.InterfaceError,
        sa_exc.DisconnectionError,
        sa_exc.TimeoutError,  # connection pool exhausted
        OSError,  # disk full, EXPORT_DIR on an unavailable mount…
    ),
)


def check_export_format(plugin: str, fmt: Any) -> None:
    """The shared name and extension rules (`core.validators.check_format`)."""
    check_format(plugin, fmt, what="export format")


def available_formats() -> dict[str, ExportFormat]:
    """Formats registered through `register_export_formats()`, by name (sorted).

    A format with a bad name or extension, or a name registered twice, is a
    ConfigError naming the plugin that registered it.
    """
    formats = current().plugins.collect_named(
        "register_export_formats", "export format", methods=("write",), check=check_export_format
    )
    return dict(sorted(formats.items()))


def choose_format(export_format: str) -> ExportFormat:
    """The registered format called `export_format`, or a TaskArgumentError listing them."""
    formats = available_formats()
    listing = ", ".join(formats) or "(none)"
    if not is_name(export_format):
        raise TaskArgumentError(
            f"export_format={export_format!r:.80} is not a format name (letters, digits, "
            f"'_' and '-' only; no paths); available formats: {listing}"
        )
    if export_format not in formats:
        raise TaskArgumentError(
            f"unknown export_format {export_format!r:.80}; available formats: {listing}"
        )
    return formats[export_format]


def export_dir() -> Path:
    """`EXPORT_DIR`, or `<var_dir>/exports`, as an absolute path."""
    runtime = current()
    configured = runtime.settings_for("export").dir
    return Path(configured or runtime.settings.var_dir / "exports").resolve()


def day_bounds(start_date: date, end_date: date) -> tuple[int, int]:
    """Inclusive UTC days → half-open `[start, end + 1 day)` in epoch microseconds."""
    start = datetime.combine(start_date, time.min, tzinfo=UTC)
    end = datetime.combine(end_date + timedelta(days=1), time.min, tzinfo=UTC)
    return to_micros(start), to_micros(end)


def _check_range(
    user_id: int, start_date: date, end_date: date, export_format: str = "csv"
) -> None:
    """Refuse, before anything is sent, a range that ends before it starts or is too long,
    or a format that is not registered (so a path-like name never reaches the broker)."""
    if end_date < start_date:
        raise TaskArgumentError(
            f"end_date {end_date.isoformat()} is before start_date {start_date.isoformat()}; "
            "both days are included, so pass end_date >= start_date"
        )
    max_days = current().settings_for("export").max_days
    days = (end_date - start_date).days + 1
    if days > max_days:
        raise TaskArgumentError(
            f"{start_date.isoformat()}..{end_date.isoformat()} covers {days} days, more than "
            f"EXPORT_MAX_DAYS={max_days}; split the export into shorter ranges"
        )
    if end_date >= date.max:  # the range ends at the next midnight, which must exist
        raise TaskArgumentError(
            f"end_date {end_date.isoformat()} is out of range; the last day is "
            f"{(date.max - timedelta(days=1)).isoformat()}"
        )
    choose_format(export_format)


def _idempotency_key() -> str:
    """`task:<celery task id>` inside the export task, else a fresh local key."""
    from celery import current_task

    running = current_task._get_current_object()
    request_id = getattr(getattr(running, "request", None), "id", None)
    if running is not None and running.name == export_transaction_data.name and request_id:
        return f"task:{request_id}"
    return f"local:{uuid.uuid4().hex}"


def _announce(record: ExportRecord, duplicate: bool) -> dict[str, Any]:
    """Emit `on_export_ready` unless done for this record already; return the result."""
    runtime = current()
    if record.ready_notified_at is None:
        runtime.hook.on_export_ready(export=record)
        with runtime.db.session() as session:
            session.execute(
                update(ExportRecord)
                .where(ExportRecord.id == record.id)
                .values(ready_notified_at=utcnow())
            )
    return {**record.summary(), "duplicate": duplicate}


def _example() -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {
        "user_id": 1,
        "start_date": (today - timedelta(days=30)).isoformat(),
        "end_date": today.isoformat(),
        "export_format": "csv",
    }


@task(
    queue="export",
    retry=RETRY,
    example=_example,
    check=_check_range,
    submit_limit=SubmitLimit("user_id", per_minute=10),
    track_started=True,
)
def export_transaction_data(
    user_id: UserId, start_date: date, end_date: date, export_format: str = "csv"
) -> dict[str, Any]:
    """Export a user's transactions from `start_date` to `end_date` (whole UTC days) to a file.

    Rows stream from the database into the format's writer, into a temporary file
    renamed into `EXPORT_DIR`; an `ExportRecord` keeps rows, bytes and SHA-256;
    `on_export_ready(export)` follows the commit. Returns path, file_name, format,
    rows, bytes, sha256 (and `duplicate: true` when a redelivered task found its export).
    """
    fmt = choose_format(export_format)
    runtime = current()
    key = _idempotency_key()
    with runtime.db.session() as session:
        users = runtime.data.users
        with data_scope(session) as data:
            found = data.execute(select(users.c.id).where(users.c.id == user_id)).first()
        if found is None:
            raise TaskArgumentError(f"user_id={user_id}: no such user; nothing was exported")
        existing = session.scalars(
            select(ExportRecord).where(ExportRecord.idempotency_key == key)
        ).first()
    if existing is not None:
        asked = (user_id, start_date, end_date, fmt.name)
        if (existing.user_id, existing.start_date, existing.end_date, existing.format) != asked:
            raise TaskArgumentError(
                f"task id {key.removeprefix('task:')!r} already produced export {existing.id} "
                "with other arguments; send a new task (with a new id) for this export"
            )
        log.info("export_already_done", export_id=existing.id, idempotency_key=key)
        return _announce(existing, duplicate=True)

    folder = export_dir()
    name = (
        f"transactions-u{user_id}-{start_date.isoformat()}-{end_date.isoformat()}-"
        f"{uuid.uuid4().hex[:8]}.{fmt.extension}"
    )
    start_us, end_us = day_bounds(start_date, end_date)
    data_db = runtime.data_db or runtime.db
    with data_db.engine.connect() as conn, atomic_writer(folder, name) as out:
        source = stream_rows(conn, user_id, start_us, end_us, runtime.data)
        try:
            fmt.write(list(COLUMNS), source, cast(BinaryIO, out))
        finally:
            source.close()  # a format that stopped early must not leave the cursor open
    written = out.result
    assert written is not None
    record = ExportRecord(
        idempotency_key=key,
        user_id=user_id,
        format=fmt.name,
        start_date=start_date,
        end_date=end_date,
        path=str(written.path),
        file_name=written.path.name,
        rows=source.count,
        bytes=written.bytes,
        sha256=written.sha256,
        created_at=utcnow(),
    )
    try:
        with runtime.db.session() as session:
            session.add(record)
    except sa_exc.IntegrityError:
        with suppress(FileNotFoundError):
            written.path.unlink()
        with runtime.db.session() as session:
            winner = session.scalars(
                select(ExportRecord).where(ExportRecord.idempotency_key == key)
            ).first()
        if winner is None:  # not our key: e.g. the user was deleted meanwhile
            raise
        # The same task ran twice at once and the other run committed first: keep its file.
        return _announce(winner, duplicate=True)
    except BaseException:
        with suppress(FileNotFoundError):
            written.path.unlink()
        raise
    log.info(
        "export_written",
        export_id=record.id,
        user_id=user_id,
        format=fmt.name,
        rows=record.rows,
        bytes=record.bytes,
    )
    return _announce(record, duplicate=False)
