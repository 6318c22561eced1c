"""The README's third-party format and testing examples work as written."""

from __future__ import annotations

import re
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import plugins.export
from banktasks_testing import make_account, make_transaction
from core import TaskArgumentError
from plugins.export import export_transaction_data

README = Path(plugins.export.__file__).parent / "README.md"


def _example(marker: str, name: str) -> types.ModuleType:
    """The README's one python block that contains `marker`, run as module `name`."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (source,) = [b for b in blocks if marker in b]
    module = types.ModuleType(name)
    exec(compile(source, f"{README}:{name}", "exec"), module.__dict__)
    return module


def test_readme_tsv_format_is_listed_and_used(make_app: Any) -> None:
    acme_tsv = _example("def register_export_formats(", "acme_tsv")
    app = make_app("export", acme_tsv)
    with app.runtime.db.session() as session:
        account = make_account(session)
        at = datetime(2024, 1, 15, tzinfo=UTC)
        make_transaction(session, account, amount="7.50", counterparty="tab\there", at=at)
        user_id = account.user_id
    days = {"user_id": user_id, "start_date": "2024-01-01", "end_date": "2024-01-31"}
    with pytest.raises(TaskArgumentError, match="available formats: csv, jsonl, tsv"):
        export_transaction_data(**days, export_format="xml")
    result = export_transaction_data(**days, export_format="tsv")
    header, row = Path(result["path"]).read_text().splitlines()
    assert header.split("\t") == list(plugins.export.COLUMNS)
    assert row.split("\t")[5] == "7.50"
    assert row.split("\t")[7] == "tab here"


def test_readme_testing_example(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    acme_tsv = _example("def register_export_formats(", "acme_tsv")
    monkeypatch.setitem(sys.modules, "acme_tsv", acme_tsv)
    module = _example("def test_tsv(", "test_acme_tsv")
    module.test_tsv(make_app)
