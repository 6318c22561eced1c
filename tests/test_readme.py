"""The README's complete plugin example runs as printed."""

from __future__ import annotations

import importlib
import re
import sys
from decimal import Decimal
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(after_heading: str, lang: str = "python") -> str:
    text = README.read_text()
    start = text.index(after_heading)
    match = re.search(rf"```{lang}\n(.*?)```", text[start:], re.S)
    assert match, f"no {lang} block after {after_heading!r}"
    return match.group(1)


def test_readme_plugin_example(make_app, tmp_path, monkeypatch):
    source = readme_block("### A complete plugin")
    assert len(source.strip().splitlines()) <= 45
    (tmp_path / "acme_rules.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("acme_rules", None)
    acme_rules = importlib.import_module("acme_rules")
    monkeypatch.setenv("ACME_RULES_MIN_AMOUNT", "3000")
    app = make_app(plugins=[acme_rules])
    celery_task = app.tasks["acme_rules.count_round_amounts"]
    assert celery_task.max_retries == 3 and celery_task.autoretry_for == (ConnectionError,)
    entry = app.conf.beat_schedule["acme-round-amounts"]
    assert entry["kwargs"] == {"min_amount": "3000"}
    assert app.conf.task_routes["acme_rules.count_round_amounts"] == {"queue": "acme_rules"}

    from core.models import Account, Transaction, User

    with app.runtime.db.session() as session:
        user = User(email="a@example.com", full_name="A")
        account = Account(user=user, number="400000000001")
        session.add_all([user, account])
        session.flush()
        for amount in ("3000.00", "4000.00", "4000.50", "2000.00", "12000.00"):
            session.add(Transaction(account_id=account.id, amount=Decimal(amount), kind="deposit"))
    assert acme_rules.count_round_amounts(min_amount="3000") == {
        "min_amount": "3000",
        "round_amounts": 3,
    }
    sys.modules.pop("acme_rules", None)


def test_readme_holds_the_current_plugin_readmes():
    sys.path.insert(0, str(README.parent / "scripts"))
    try:
        from sync_readme import synced
    finally:
        sys.path.pop(0)
    assert README.read_text() == synced(README.read_text()), "run `make readme`"
