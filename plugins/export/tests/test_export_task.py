"""Tests of `export.export_transaction_data` in-process (SQLite, and PostgreSQL where marked)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from sqlalchemy import event, func, select

from banktasks_testing import assert_retry_policy
from core import ConfigError, TaskArgumentError, hookimpl
from core.models import Account, Transaction, User
from plugins.export import COLUMNS, CsvFormat, ExportRecord, export_transaction_data

TASK = "export.export_transaction_data"
NUMBER = "401234567890"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_user(app: Any, user_id: int = 1, number: str = NUMBER) -> int:
    """A user with one account; returns the account id."""
    with app.runtime.db.session() as s:
        s.add(User(id=user_id, email=f"user{user_id}@example.com", full_name="Ada Lovelace"))
        account = Account(user_id=user_id, number=number)
        s.add(account)
        s.flush()
        return account.id


def add_tx(app: Any, account_id: int, at: datetime, amount: str = "10.00", **kw: Any) -> int:
    with app.runtime.db.session() as s:
        tx = Transaction(
            account_id=account_id,
            amount=Decimal(amount),
            kind=kw.pop("kind", "payment"),
            created_at=at,
            **kw,
        )
        s.add(tx)
        s.flush()
        return tx.id


def records(app: Any) -> list[ExportRecord]:
    with app.runtime.db.session() as s:
        return list(s.scalars(select(ExportRecord).order_by(ExportRecord.id)))


def files_in(folder: Path) -> list[str]:
    """Every file in the export folder, temp files (dot files) included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def read_csv(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


class Listener:
    """A plugin that implements on_export_ready and records what it got."""

    def __init__(self, name: str = "listener", fail_times: int = 0) -> None:
        self.name = name
        self.calls: list[dict[str, Any]] = []
        self.fail_times = fail_times
        self.committed_when_called: list[bool] = []
        self.app: Any = None

    @hookimpl
    def on_export_ready(self, export: ExportRecord) -> Any:
        with self.app.runtime.db.session() as s:
            self.committed_when_called.append(s.get(ExportRecord, export.id) is not None)
        self.calls.append(
            {k: getattr(export, k) for k in ("id", "user_id", "format", "path", "file_name")}
        )
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("listener broke")
        return {"queued": f"export-ready:{export.id}"}


class FormatPlugin:
    """A plugin registering one export format object."""

    def __init__(self, fmt: Any, name: str = "acme_formats") -> None:
        self.name = name
        self.fmt = fmt

    @hookimpl
    def register_export_formats(self) -> list[Any]:
        return [self.fmt]


def test_export_end_day_is_included_whole(app: Any) -> None:
    acc = add_user(app)
    before = add_tx(app, acc, utc(2023, 12, 31, 23, 59, 59, 999999))
    first = add_tx(app, acc, utc(2024, 1, 1))
    last = add_tx(app, acc, utc(2024, 1, 31, 23, 59, 59, 999999))
    after = add_tx(app, acc, utc(2024, 2, 1))
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    rows = read_csv(result["path"])
    ids = [int(r[0]) for r in rows[1:]]
    assert ids == [first, last]
    assert before not in ids and after not in ids
    assert result["rows"] == 2
    assert rows[2][1] == "2024-01-31T23:59:59.999999+00:00"


def test_export_single_day_range(app: Any) -> None:
    acc = add_user(app)
    add_tx(app, acc, utc(2024, 1, 14, 23, 59, 59, 999999))
    inside = add_tx(app, acc, utc(2024, 1, 15, 12))
    add_tx(app, acc, utc(2024, 1, 16))
    result = export_transaction_data(user_id=1, start_date="2024-01-15", end_date="2024-01-15")
    assert [int(r[0]) for r in read_csv(result["path"])[1:]] == [inside]


def test_export_accepts_iso_strings_and_dates(app: Any) -> None:
    acc = add_user(app)
    add_tx(app, acc, utc(2024, 1, 10))
    by_text = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    by_date = export_transaction_data(
        user_id=1, start_date=date(2024, 1, 1), end_date=date(2024, 1, 31)
    )
    assert by_text["sha256"] == by_date["sha256"]
    assert by_text["path"] != by_date["path"]
    assert by_text["start_date"] == "2024-01-01" and by_text["end_date"] == "2024-01-31"


def test_export_of_an_empty_range_writes_a_header_only_file(app: Any) -> None:
    add_user(app)
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    assert result["rows"] == 0
    assert read_csv(result["path"]) == [COLUMNS]


def test_export_only_the_users_own_accounts(app: Any) -> None:
    mine = add_user(app, 1, "401111111111")
    second = Account(user_id=1, number="402222222222")
    with app.runtime.db.session() as s:
        s.add(second)
    theirs = add_user(app, 2, "403333333333")
    a = add_tx(app, mine, utc(2024, 1, 2))
    b = add_tx(app, second.id, utc(2024, 1, 3))
    add_tx(app, theirs, utc(2024, 1, 2, 12))
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    rows = read_csv(result["path"])[1:]
    assert [int(r[0]) for r in rows] == [a, b]
    assert [r[2] for r in rows] == ["****1111", "****2222"]


def test_export_csv_content_masked_exact_and_neutralised(app: Any) -> None:
    acc = add_user(app)
    evil = '=HYPERLINK("http://evil.example","x")'
    tid = add_tx(
        app,
        acc,
        utc(2024, 1, 5, 8, 30),
        "10000.01",
        kind="deposit",
        counterparty=evil,
        description='Rent, "January"\nsecond line',
    )
    add_tx(app, acc, utc(2024, 1, 6), "0.05", counterparty="@SUM(A1)", description="-2+3")
    add_tx(app, acc, utc(2024, 1, 7), "12345678.90", status="pending")
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    raw = Path(result["path"]).read_bytes()
    assert NUMBER.encode() not in raw
    assert NUMBER[-4:].encode() in raw
    header, *rows = read_csv(result["path"])
    assert header == COLUMNS
    assert rows[0] == [
        str(tid),
        "2024-01-05T08:30:00.000000+00:00",
        "****7890",
        "deposit",
        "completed",
        "10000.01",
        "USD",
        "'" + evil,
        'Rent, "January"\nsecond line',
    ]
    assert rows[1][5:] == ["0.05", "USD", "'@SUM(A1)", "'-2+3"]
    assert rows[2][4:6] == ["pending", "12345678.90"]
    assert sum(Decimal(r[5]) for r in rows) == Decimal("12355678.96")


def test_export_jsonl(app: Any) -> None:
    acc = add_user(app)
    add_tx(app, acc, utc(2024, 1, 5), "10000.01", counterparty="=x")
    result = export_transaction_data(
        user_id=1, start_date="2024-01-01", end_date="2024-01-31", export_format="jsonl"
    )
    assert result["format"] == "jsonl" and result["file_name"].endswith(".jsonl")
    lines = Path(result["path"]).read_text(encoding="utf-8").splitlines()
    obj = json.loads(lines[0])
    assert len(lines) == 1
    assert obj["amount"] == "10000.01"
    assert obj["account"] == "****7890"
    assert obj["counterparty"] == "=x"  # JSON is data, not a spreadsheet: kept as is
    assert obj["description"] is None


def test_export_file_sha256_bytes_mode_and_name(app: Any, export_dir: Path) -> None:
    acc = add_user(app)
    for day in range(1, 29):
        add_tx(app, acc, utc(2024, 1, day), f"{day}.{day:02d}")
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    path = Path(result["path"])
    data = path.read_bytes()
    assert path.parent == export_dir
    assert hashlib.sha256(data).hexdigest() == result["sha256"]
    assert len(data) == result["bytes"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert result["file_name"] == path.name
    assert path.name.startswith("transactions-u1-2024-01-01-2024-01-31-")
    assert files_in(export_dir) == [path.name]  # no temp file left over
    (record,) = records(app)
    assert (record.rows, record.bytes, record.sha256, record.path) == (
        28,
        len(data),
        result["sha256"],
        str(path),
    )
    assert (record.start_date, record.end_date, record.format) == (
        date(2024, 1, 1),
        date(2024, 1, 31),
        "csv",
    )


def test_export_dir_setting(make_app: Any, tmp_path: Path, monkeypatch: Any) -> None:
    target = tmp_path / "elsewhere" / "exports"
    monkeypatch.setenv("EXPORT_DIR", str(target))
    app = make_app("export")
    add_user(app)
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-02")
    assert Path(result["path"]).parent == target


def test_export_dir_that_is_a_file_stops_start_up(
    make_app: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    monkeypatch.setenv("EXPORT_DIR", str(a_file))
    with pytest.raises(ConfigError, match=f"EXPORT_DIR.*{a_file} exists and is not a directory"):
        make_app("export")


def test_blank_export_dir_means_the_default(
    make_app: Any, monkeypatch: Any, export_dir: Path
) -> None:
    monkeypatch.setenv("EXPORT_DIR", "")
    app = make_app("export")
    assert app.runtime.settings_for("export").dir is None
    add_user(app)
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-02")
    assert Path(result["path"]).parent == export_dir


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"start_date": "2024-01-31", "end_date": "2024-01-30"},
            "end_date 2024-01-30 is before start_date 2024-01-31",
        ),
        ({"user_id": 999}, "user_id=999: no such user"),
        ({"export_format": "xml"}, "unknown export_format 'xml'; available formats: csv, jsonl"),
        ({"export_format": "../csv"}, "is not a format name"),
        ({"export_format": "csv/../../etc"}, "no paths); available formats: csv, jsonl"),
        ({"export_format": "/tmp/x"}, "is not a format name"),
        ({"export_format": "CSV"}, "is not a format name"),
        ({"export_format": ""}, "is not a format name"),
        (
            {"start_date": "2024-01-01", "end_date": "2025-01-01"},
            "covers 367 days, more than EXPORT_MAX_DAYS=366",
        ),
    ],
)
def test_export_argument_errors_write_nothing(
    app: Any, export_dir: Path, kwargs: dict[str, Any], message: str
) -> None:
    add_user(app)
    call = {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-31", **kwargs}
    with pytest.raises(TaskArgumentError) as err:
        export_transaction_data(**call)
    assert message in str(err.value)
    assert files_in(export_dir) == []
    assert records(app) == []


def test_export_bad_dates_are_refused_by_the_caller(app: Any) -> None:
    with pytest.raises(TaskArgumentError, match="start_date"):
        app.tasks[TASK].delay(user_id=1, start_date="2024-02-30", end_date="2024-03-01")
    with pytest.raises(TaskArgumentError, match="user_id"):
        app.tasks[TASK].delay(user_id="one", start_date="2024-01-01", end_date="2024-01-02")


def test_export_max_days_boundary(make_app: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("EXPORT_MAX_DAYS", "31")
    app = make_app("export")
    add_user(app)
    ok = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    assert ok["rows"] == 0
    with pytest.raises(TaskArgumentError, match="covers 32 days, more than EXPORT_MAX_DAYS=31"):
        export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-02-01")
    assert len(records(app)) == 1


def test_export_default_max_days_allows_a_leap_year(app: Any) -> None:
    add_user(app)
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-12-31")
    assert result["rows"] == 0


@pytest.mark.parametrize("value", ["0", "-1"])
def test_export_max_days_must_be_positive(make_app: Any, monkeypatch: Any, value: str) -> None:
    monkeypatch.setenv("EXPORT_MAX_DAYS", value)
    with pytest.raises(ConfigError, match="EXPORT_MAX_DAYS"):
        make_app("export")


def test_export_argument_errors_are_not_retried(
    app: Any, export_dir: Path, retries: list[Any]
) -> None:
    add_user(app)
    result = app.tasks[TASK].apply(
        kwargs={"user_id": 1, "start_date": "2024-01-31", "end_date": "2024-01-01"}
    )
    assert result.failed()
    assert isinstance(result.result, TaskArgumentError)
    assert retries == []
    assert files_in(export_dir) == []
    assert records(app) == []


def test_export_query_streams_with_yield_per(app_with: Any, app: Any) -> None:
    acc = add_user(app)
    for i in range(7):
        add_tx(app, acc, utc(2024, 1, 1 + i))
    seen: list[dict[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any):
        if "FROM transactions" in statement:
            seen.append(dict(context.execution_options))

    received: list[Any] = []

    class Probe:
        name = "probe"
        extension = "txt"
        media_type = "text/plain"

        def write(self, columns: list[str], rows: Iterable[tuple], out: BinaryIO) -> None:
            received.append(rows)
            assert iter(rows) is rows  # a lazy iterator, not a materialised list
            for row in rows:
                out.write(f"{row[0]}\n".encode())

    event.listen(app.runtime.db.engine, "before_cursor_execute", capture)
    probe_app = app_with([FormatPlugin(Probe())])
    event.listen(probe_app.runtime.db.engine, "before_cursor_execute", capture)
    result = export_transaction_data(
        user_id=1, start_date="2024-01-01", end_date="2024-01-31", export_format="probe"
    )
    assert result["rows"] == 7
    assert not isinstance(received[0], list | tuple)
    assert seen and seen[-1].get("yield_per") == 5000
    assert seen[-1].get("stream_results") is True


def test_export_format_that_fails_mid_stream_leaves_nothing(
    app_with: Any, app: Any, export_dir: Path, retries: list[Any]
) -> None:
    acc = add_user(app)
    for i in range(3):
        add_tx(app, acc, utc(2024, 1, 1 + i))

    class Broken:
        name = "broken"
        extension = "txt"
        media_type = "text/plain"

        def write(self, columns: list[str], rows: Iterable[tuple], out: BinaryIO) -> None:
            for row in rows:
                out.write(b"partial row\n")
                raise ValueError(f"cannot render row {row[0]}")

    broken_app = app_with([FormatPlugin(Broken())])
    result = broken_app.tasks[TASK].apply(
        kwargs={
            "user_id": 1,
            "start_date": "2024-01-01",
            "end_date": "2024-01-31",
            "export_format": "broken",
        }
    )
    assert result.failed() and isinstance(result.result, ValueError)
    assert retries == []
    assert files_in(export_dir) == []
    assert records(broken_app) == []


def test_export_transient_os_error_is_retried_once_then_succeeds(
    app_with: Any, app: Any, export_dir: Path, retries: list[Any]
) -> None:
    add_user(app)
    attempts: list[int] = []

    class DiskFullOnce:
        name = "flaky"
        extension = "txt"
        media_type = "text/plain"

        def write(self, columns: list[str], rows: Iterable[tuple], out: BinaryIO) -> None:
            attempts.append(1)
            out.write(b"header\n")
            if len(attempts) == 1:
                raise OSError(28, "No space left on device")

    flaky_app = app_with([FormatPlugin(DiskFullOnce())])
    result = flaky_app.tasks[TASK].apply(
        kwargs={
            "user_id": 1,
            "start_date": "2024-01-01",
            "end_date": "2024-01-31",
            "export_format": "flaky",
        },
        task_id="retry-me",
    )
    assert result.successful(), result.result
    assert len(attempts) == 2
    (retry,) = retries
    assert isinstance(retry.exc, OSError)
    assert 0 <= retry.when <= 60  # backoff 60 * 2**0 with full jitter
    assert files_in(export_dir) == [Path(result.result["path"]).name]
    (record,) = records(flaky_app)
    assert record.idempotency_key == "task:retry-me"


def test_export_retry_policy_options(app: Any) -> None:
    import sqlalchemy.exc as sa_exc

    assert_retry_policy(
        app,
        TASK,
        max_retries=5,
        retry_on=(
            sa_exc.OperationalError,
            sa_exc.InterfaceError,
            sa_exc.DisconnectionError,
            sa_exc.TimeoutError,
            OSError,
        ),
        backoff=60,
        backoff_max=600,
    )
    celery_task = app.tasks[TASK]
    assert app.conf.task_routes[TASK] == {"queue": "export"}
    assert celery_task.retry_jitter is True
    assert TaskArgumentError in celery_task.dont_autoretry_for
    assert celery_task.acks_late is True
    assert "export" not in " ".join(app.conf.beat_schedule)  # no schedule


def test_export_same_task_id_writes_one_file_and_one_row(
    app_with: Any, app: Any, export_dir: Path
) -> None:
    acc = add_user(app)
    add_tx(app, acc, utc(2024, 1, 3))
    listener = Listener()
    listened = app_with([listener])
    kwargs = {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-31"}
    first = listened.tasks[TASK].apply(kwargs=kwargs, task_id="t-1").get()
    again = listened.tasks[TASK].apply(kwargs=kwargs, task_id="t-1").get()
    assert first["duplicate"] is False and again["duplicate"] is True
    assert {k: v for k, v in again.items() if k != "duplicate"} == {
        k: v for k, v in first.items() if k != "duplicate"
    }
    assert len(records(listened)) == 1
    assert files_in(export_dir) == [first["file_name"]]
    assert len(listener.calls) == 1
    other = listened.tasks[TASK].apply(kwargs=kwargs, task_id="t-2").get()
    assert other["export_id"] != first["export_id"]
    assert len(records(listened)) == 2 and len(listener.calls) == 2


def test_export_same_task_id_with_other_arguments_is_refused(app: Any) -> None:
    add_user(app)
    kwargs = {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-31"}
    app.tasks[TASK].apply(kwargs=kwargs, task_id="t-9").get()
    again = app.tasks[TASK].apply(kwargs={**kwargs, "export_format": "jsonl"}, task_id="t-9")
    assert again.failed() and "already produced export" in str(again.result)
    assert len(records(app)) == 1


def test_export_direct_calls_are_separate_exports(app: Any) -> None:
    add_user(app)
    a = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    b = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    assert a["export_id"] != b["export_id"]
    assert all(r.idempotency_key.startswith("local:") for r in records(app))


def test_export_on_export_ready_emitted_once_after_commit(app_with: Any, app: Any) -> None:
    acc = add_user(app)
    add_tx(app, acc, utc(2024, 1, 3))
    listener = Listener()
    listened = app_with([listener])
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    assert listener.calls == [
        {
            "id": result["export_id"],
            "user_id": 1,
            "format": "csv",
            "path": result["path"],
            "file_name": result["file_name"],
        }
    ]
    assert listener.committed_when_called == [True]
    (record,) = records(listened)
    assert record.ready_notified_at is not None


def test_export_listener_failure_is_announced_again_on_redelivery(app_with: Any, app: Any) -> None:
    add_user(app)
    listener = Listener(fail_times=1)
    listened = app_with([listener])
    kwargs = {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-31"}
    failed = listened.tasks[TASK].apply(kwargs=kwargs, task_id="t-5")
    assert failed.failed() and "listener broke" in str(failed.result)
    (record,) = records(listened)
    assert record.ready_notified_at is None  # the file and row stay; the announcement is owed
    redelivered = listened.tasks[TASK].apply(kwargs=kwargs, task_id="t-5").get()
    assert redelivered["duplicate"] is True and redelivered["export_id"] == record.id
    assert len(listener.calls) == 2
    listened.tasks[TASK].apply(kwargs=kwargs, task_id="t-5").get()
    assert len(listener.calls) == 2
    assert len(records(listened)) == 1


def test_export_works_with_notifications_disabled(make_app: Any, export_dir: Path) -> None:
    notifications = Listener(name="notifications")
    app = make_app("export", notifications, banktasks_disable=["notifications"])
    notifications.app = app
    assert not app.runtime.is_enabled("notifications")
    acc = add_user(app)
    add_tx(app, acc, utc(2024, 1, 3))
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    assert result["rows"] == 1
    assert notifications.calls == []
    assert records(app)[0].ready_notified_at is not None


def test_export_third_party_format_is_listed_and_used(app_with: Any, app: Any) -> None:
    acc = add_user(app)
    add_tx(app, acc, utc(2024, 1, 3), "7.50")

    class Tsv:
        name = "tsv"
        extension = "tsv"
        media_type = "text/tab-separated-values"

        def write(self, columns: list[str], rows: Iterable[tuple], out: BinaryIO) -> None:
            out.write(("\t".join(columns) + "\n").encode())
            for row in rows:
                cells = ["" if c is None else str(c).replace("\t", " ") for c in row]
                out.write(("\t".join(cells) + "\n").encode())

    tsv_app = app_with([FormatPlugin(Tsv())])
    with pytest.raises(TaskArgumentError, match="available formats: csv, jsonl, tsv"):
        export_transaction_data(
            user_id=1, start_date="2024-01-01", end_date="2024-01-31", export_format="xml"
        )
    result = export_transaction_data(
        user_id=1, start_date="2024-01-01", end_date="2024-01-31", export_format="tsv"
    )
    lines = Path(result["path"]).read_text().splitlines()
    assert lines[1].split("\t")[5] == "7.50"
    assert records(tsv_app)[0].format == "tsv"


def test_export_format_registered_twice_is_a_config_error(app_with: Any, app: Any) -> None:
    add_user(app)
    app_with([FormatPlugin(CsvFormat(), name="copycat")])
    with pytest.raises(ConfigError, match="'csv' is registered twice"):
        export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")


class Odd:
    """A format whose name or extension breaks the shared rules."""

    media_type = "text/plain"

    def __init__(self, name: str, extension: str) -> None:
        self.name, self.extension = name, extension

    def write(self, columns: list[str], rows: Iterable[tuple], out: BinaryIO) -> None:
        out.write(b"never called\n")


@pytest.mark.parametrize(
    ("name", "extension", "message"),
    [
        ("TSV", "tsv", "plugin 'acme_formats': export format 'TSV' needs a name of lower-case"),
        ("../tsv", "tsv", "plugin 'acme_formats': export format '../tsv' needs a name of lower"),
        (
            "tsv",
            ".tsv",
            "plugin 'acme_formats': export format 'tsv' has extension '.tsv'; expected",
        ),
        ("tsv", "a/b", "plugin 'acme_formats': export format 'tsv' has extension 'a/b'"),
    ],
)
def test_export_format_with_a_bad_name_or_extension_is_a_config_error(
    app_with: Any, app: Any, export_dir: Path, name: str, extension: str, message: str
) -> None:
    add_user(app)
    odd_app = app_with([FormatPlugin(Odd(name, extension))])
    with pytest.raises(ConfigError) as err:
        export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    assert message in str(err.value)
    assert files_in(export_dir) == []
    assert records(odd_app) == []


def test_export_example_is_user_1_last_30_days(app: Any) -> None:
    example = app.runtime.tasks[TASK].example_kwargs()
    today = datetime.now(UTC).date()
    assert example == {
        "user_id": 1,
        "start_date": (today - timedelta(days=30)).isoformat(),
        "end_date": today.isoformat(),
        "export_format": "csv",
    }
    app.runtime.tasks[TASK].validate((), example)


@pytest.mark.postgres
def test_export_on_postgresql_streams_with_a_server_side_cursor(
    make_app: Any, pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugins.export.rows as rows_module

    app = make_app("export", database_url=pg_database_url)
    assert app.runtime.db.dialect == "postgresql"
    acc = add_user(app)
    add_tx(app, acc, utc(2023, 12, 31, 23, 59, 59, 999999))
    first = add_tx(app, acc, utc(2024, 1, 1), "10000.01", counterparty="+cmd")
    last = add_tx(app, acc, utc(2024, 1, 31, 23, 59, 59, 999999), "0.05")
    add_tx(app, acc, utc(2024, 2, 1))
    cursors: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any):
        if "FROM transactions" in statement:
            cursors.append(type(cursor).__name__)

    def raw_cursor(conn: Any, query: Any) -> Any:  # the CSV fast path's DB-API cursor
        cursor = real_raw_cursor(conn, query)
        cursors.append(type(cursor).__name__)
        return cursor

    real_raw_cursor = rows_module._dbapi_cursor
    monkeypatch.setattr(rows_module, "_dbapi_cursor", raw_cursor)
    event.listen(app.runtime.db.engine, "before_cursor_execute", capture)
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-31")
    rows = read_csv(result["path"])[1:]
    assert [int(r[0]) for r in rows] == [first, last]
    assert [r[5] for r in rows] == ["10000.01", "0.05"]
    assert rows[0][7] == "'+cmd"
    assert cursors == ["ServerCursor"]
    with app.runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ExportRecord)) == 1
    data = Path(result["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == result["sha256"]
    cursors.clear()
    jsonl = export_transaction_data(
        user_id=1, start_date="2024-01-01", end_date="2024-01-31", export_format="jsonl"
    )
    assert jsonl["rows"] == 2
    assert cursors == ["ServerCursor"]  # the generic path: SQLAlchemy's yield_per


def test_export_csv_reader_round_trip_of_whole_file(app: Any) -> None:
    acc = add_user(app)
    texts = ["a,b", 'say "x"', "line\nbreak", "\ttab", "\rcr", "-1", "+1", "@a", "=1"]
    for i, text in enumerate(texts):
        add_tx(app, acc, utc(2024, 1, 1, i), counterparty=text, description=text)
    result = export_transaction_data(user_id=1, start_date="2024-01-01", end_date="2024-01-01")
    rows = read_csv(result["path"])[1:]
    expected = [("'" + t) if t[0] in "=+-@\t\r" else t for t in texts]
    assert [r[7] for r in rows] == expected
    assert [r[8] for r in rows] == expected
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(read_csv(result["path"]))
    assert buf.getvalue().encode() == Path(result["path"]).read_bytes()


def test_export_concurrent_duplicate_keeps_the_first_commit(
    app_with: Any, app: Any, export_dir: Path
) -> None:
    add_user(app)
    other_run: list[int] = []

    class RacingFormat:
        """While this run writes, 'another delivery' of the same task commits its export."""

        name = "racing"
        extension = "txt"
        media_type = "text/plain"

        def write(self, columns: list[str], rows: Iterable[tuple], out: BinaryIO) -> None:
            out.write(b"ours\n")
            with app.runtime.db.session() as s:
                rec = ExportRecord(
                    idempotency_key="task:race",
                    user_id=1,
                    format="racing",
                    start_date=date(2024, 1, 1),
                    end_date=date(2024, 1, 31),
                    path=str(export_dir / "theirs.txt"),
                    file_name="theirs.txt",
                    rows=0,
                    bytes=5,
                    sha256="0" * 64,
                )
                s.add(rec)
                s.flush()
                other_run.append(rec.id)

    racing = app_with([FormatPlugin(RacingFormat())])
    result = (
        racing.tasks[TASK]
        .apply(
            kwargs={
                "user_id": 1,
                "start_date": "2024-01-01",
                "end_date": "2024-01-31",
                "export_format": "racing",
            },
            task_id="race",
        )
        .get()
    )
    assert result["duplicate"] is True and result["export_id"] == other_run[0]
    assert result["file_name"] == "theirs.txt"
    assert len(records(racing)) == 1
    assert files_in(export_dir) == []  # our copy was removed


def test_caller_refuses_bad_range_before_anything_is_sent(make_app):
    app = make_app("export")
    broker = app.redis_client()
    celery_task = app.tasks[TASK]
    with pytest.raises(TaskArgumentError, match="is before start_date"):
        celery_task.delay(user_id=1, start_date="2024-01-31", end_date="2024-01-01")
    with pytest.raises(TaskArgumentError, match="more than EXPORT_MAX_DAYS=366"):
        celery_task.delay(user_id=1, start_date="2023-01-01", end_date="2024-12-31")
    assert broker.llen("export") == 0


def test_submissions_are_rate_limited_per_user(make_app, monkeypatch):
    from core import SubmissionRateLimited

    monkeypatch.setenv("EXPORT_SUBMIT_LIMIT_PER_MINUTE", "2")
    app = make_app("export")
    celery_task = app.tasks[TASK]
    args = {"start_date": "2024-01-01", "end_date": "2024-01-31"}
    celery_task.delay(user_id=1, **args)
    celery_task.delay(user_id=1, **args)
    with pytest.raises(SubmissionRateLimited, match="user_id=1"):
        celery_task.delay(user_id=1, **args)
    celery_task.delay(user_id=2, **args)
    assert app.redis_client().llen("export") == 3
