"""The README's third-party format, section and testing examples work as written."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import plugins.reports
from plugins.reports import generate_daily_reports

from .helpers import DAY, add_account, add_tx, at

README = Path(plugins.reports.__file__).parent / "README.md"


def _example(hook: str, name: str) -> types.ModuleType:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (source,) = [b for b in blocks if f"def {hook}(" in b]
    module = types.ModuleType(name)
    exec(compile(source, f"{README}:{hook}", "exec"), module.__dict__)
    return module


def test_readme_format_and_section_examples(make_app: Any, in_session: Any) -> None:
    markdown = _example("register_report_formats", "acme_markdown")
    large = _example("register_report_sections", "acme_large")
    make_app("reports", markdown, large)

    def fill(session: Any) -> None:
        account = add_account(session)
        add_tx(session, account, "4999.99", at(DAY, 1))
        add_tx(session, account, "5000.00", at(DAY, 2))
        add_tx(session, account, "12000.50", at(DAY, 3))

    in_session(fill)
    result = generate_daily_reports(report_date=DAY, formats=["md", "json"])
    assert list(result["files"]) == ["md", "json"]
    assert Path(result["files"]["md"]).read_text() == (
        "# Daily report 2024-01-31\n\n| currency | count | sum |\n|---|---:|---:|\n"
        "| USD | 3 | 22000.49 |\n"
    )
    assert "acme_large" in result["sections"]
    sections = json.loads(Path(result["files"]["json"]).read_text())["sections"]
    assert sections["acme_large"] == {"count": 2}


def test_readme_testing_example(make_app: Any, monkeypatch: Any) -> None:
    markdown = _example("register_report_formats", "acme_markdown")
    monkeypatch.setitem(sys.modules, "acme_markdown", markdown)
    module = _example("test_markdown", "test_acme_markdown")
    module.test_markdown(make_app)
