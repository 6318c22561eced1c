"""The README: short, the two commands first, working links, and a plugin that runs as printed."""

from __future__ import annotations

import importlib
import re
import sys
from decimal import Decimal
from pathlib import Path

from banktasks_testing import (
    assert_retry_policy,
    assert_schedule,
    make_account,
    make_transaction,
)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def readme_block(after_heading: str, lang: str = "python") -> str:
    """The first `lang` code block after a heading of the README."""
    text = README.read_text()
    start = text.index(after_heading)
    match = re.search(rf"```{lang}\n(.*?)```", text[start:], re.S)
    assert match, f"no {lang} block after {after_heading!r}"
    return match.group(1)


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the details go to docs/"
    head = "\n".join(lines[:40])
    assert "make demo" in head and "make test" in head


def test_readme_links_exist():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_keeps_the_seed_style_call():
    # tests/e2e/test_seed_examples.py runs this block against a real worker
    assert readme_block("## Calling tasks").startswith(
        "from core.tasks import generate_daily_reports"
    )


def test_readme_plugin_runs_as_printed(make_app, tmp_path, monkeypatch):
    source = readme_block("## A plugin in 20 lines")
    code_lines = [line for line in source.splitlines() if line.strip()]
    assert len(code_lines) <= 30, "the README's plugin should stay about 20 lines"
    (tmp_path / "acme_large.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("acme_large", None)
    module = importlib.import_module("acme_large")
    monkeypatch.setitem(sys.modules, "acme_large", module)  # removed again at teardown
    monkeypatch.setenv("ACME_LARGE_MIN_AMOUNT", "3000")

    app = make_app(("acme_large", module))

    assert_retry_policy(
        app, "acme_large.large_total", max_retries=3, retry_on=(ConnectionError,), backoff=30
    )
    assert_schedule(
        app,
        "acme-large-total",
        task="acme_large.large_total",
        cron="0 * * * *",
        kwargs={"min_amount": "3000"},
    )
    assert app.conf.task_routes["acme_large.large_total"] == {"queue": "acme_large"}
    with app.runtime.db.session() as session:
        account = make_account(session)
        for amount in ("2999.99", "3000.00", "4000.10", "12000.25"):
            make_transaction(session, account, amount=amount)
    assert module.large_total(min_amount=Decimal("3000")) == {"count": 3, "total": "19000.35"}
    assert module.large_total() == {"count": 1, "total": "12000.25"}
