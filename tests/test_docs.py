"""The documentation is tested like code (as datasette does).

Every hookspec (core and installed plugins) has a docstring, every setting a
description, every command a help text: the reference pages are generated from
them by `scripts/docs_reference.py`. Every plugin's README is included by a page
of the site, the plugin API page names everything `core` exports and every column
of the data model, its example runs, and `mkdocs build --strict` passes.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

import core
from banktasks_testing import make_account, make_transaction
from core.models import Account, Transaction, User

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def load_reference() -> ModuleType:
    """`scripts/docs_reference.py`, the MkDocs hook module that generates the reference."""
    path = ROOT / "scripts" / "docs_reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reference = load_reference()


@pytest.fixture(scope="module")
def plugin_set():
    """Default plugins and every installed plugin, as the docs build sees them."""
    return reference.all_plugins()


def test_every_hookspec_has_a_docstring(plugin_set):
    docs = reference.hook_docs(plugin_set)
    owners = {doc.owner for doc in docs}
    assert {"core", "fraud", "reports", "export", "notifications", "health"} <= owners
    missing = [f"{doc.module}.{doc.name}" for doc in docs if not doc.doc.strip()]
    assert not missing, f"hookspecs without a docstring: {', '.join(missing)}"


def test_every_setting_has_a_description(plugin_set):
    docs = reference.setting_docs(plugin_set)
    variables = {name for doc in docs for name in doc.variables}
    assert {"REDIS_URL", "FLOWER_PORT", "FRAUD_LARGE_AMOUNT", "EMAIL_BACKEND"} <= variables
    assert "FRAUD_SCHEDULE" in variables  # `schedule`, from core.PluginSettings
    missing = [f"{doc.model}.{doc.field}" for doc in docs if not doc.description]
    assert not missing, f"settings without a description: {', '.join(missing)}"


def test_every_command_has_help(plugin_set):
    docs = reference.command_docs(plugin_set)
    owners = {doc.path: doc.owner for doc in docs}
    assert owners["banktasks worker"] == "core"
    assert owners["banktasks failed list"] == "deadletters"  # a default plugin's
    assert owners["banktasks health"] == "health"  # an installed plugin's
    missing = [doc.path for doc in docs if not doc.summary]
    assert not missing, f"commands without help: {', '.join(missing)}"


def test_the_generated_pages_list_everything(plugin_set):
    hooks = reference.hook_docs(plugin_set)
    settings = reference.setting_docs(plugin_set)
    commands = reference.command_docs(plugin_set)
    page = reference.render_hooks(hooks)
    assert all(f"### `{doc.name}`" in page for doc in hooks)
    page = reference.render_settings(settings)
    assert all(f"`{name}`" in page for doc in settings for name in doc.variables)
    page = reference.render_cli(commands)
    assert all(f"`{doc.path}`" in page for doc in commands)
    for name in ("hooks", "settings", "cli"):
        text = (DOCS / "reference" / f"{name}.md").read_text()
        assert f"<!-- generated: {name} -->" in text, f"docs/reference/{name}.md lost its marker"


def included_files() -> dict[str, str]:
    """File included with `--8<-- "path"` → the docs page that includes it."""
    found = {}
    for page in DOCS.rglob("*.md"):
        for path in re.findall(r'^--8<-- "([^"]+)"\s*$', page.read_text(), re.M):
            found[path] = str(page.relative_to(DOCS))
    return found


def test_every_plugin_readme_is_included_by_a_page_in_the_nav():
    included = included_files()
    readmes = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "plugins").glob("*/README.md"))
    assert len(readmes) >= 5
    nav = (ROOT / "mkdocs.yml").read_text()
    for readme in [*readmes, "bench/README.md"]:
        assert readme in included, f"{readme} is not included by any page under docs/"
        assert f": {included[readme]}" in nav, f"docs/{included[readme]} is not in the nav"


def test_the_plugin_api_page_names_every_export_and_column():
    text = (DOCS / "plugin-api.md").read_text()
    missing = [name for name in core.__all__ if not re.search(rf"`{name}\b", text)]
    assert not missing, f"docs/plugin-api.md does not document core.{', core.'.join(missing)}"
    for model in (User, Account, Transaction):
        section = text[text.index(f"**`{model.__name__}`**") :]
        table = section[: section.index("\n\n", section.index("| attribute"))]
        documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
        columns = set(model.__mapper__.attrs.keys())
        assert columns <= documented, f"{model.__name__}: {sorted(columns - documented)}"


def test_the_data_model_example_runs(make_app):
    text = (DOCS / "plugin-api.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "from_minor" in b)
    namespace: dict = {}
    exec(compile(block, "docs/plugin-api.md", "exec"), namespace)
    app = make_app(plugins=[])
    with app.runtime.db.session() as session:
        account = make_account(session)
        other = make_account(session)
        for amount in ("0.10", "0.20", "1000.05"):
            make_transaction(session, account, amount=amount, kind="deposit")
        make_transaction(session, account, amount="5.00", kind="deposit", status="pending")
        make_transaction(session, account, amount="7.00", kind="fee")
        make_transaction(session, other, amount="9.99", kind="deposit")
    assert namespace["completed_deposits"](account.id) == Decimal("1000.35")
    assert namespace["completed_deposits"](other.id) == Decimal("9.99")
    assert namespace["completed_deposits"](10**9) == Decimal("0.00")


def test_mkdocs_build_strict(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    hooks = (tmp_path / "reference" / "hooks" / "index.html").read_text()
    assert "register_fraud_rules" in hooks and "<!-- generated" not in hooks
    fraud = (tmp_path / "plugins" / "fraud" / "index.html").read_text()
    assert "analyze_fraud_patterns" in fraud  # the README, included
