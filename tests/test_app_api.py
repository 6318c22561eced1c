"""The entry points and the app state: Celery's idiom, no app built behind the caller's back,
plugins named by entry point or explicitly, default plugins on the ordinary hooks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import ModuleType

import pytest
from celery import Celery

import core
from core import ConfigError, NoAppError, PluginSettings, create_app, hookimpl, load_settings, task


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (nothing imported or built yet)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_core_builds_no_app_and_core_app_is_the_default_app(bt_env):
    import os

    out = run_python(
        """
        import sys, types
        import core
        assert "core.celery" not in sys.modules, "import core built the default app"
        from core import app
        assert not isinstance(app, types.ModuleType), app
        from core.celery import app as celery_app
        assert app is celery_app
        print(type(app).__name__, sorted(app.runtime.plugins.enabled())[:2])
        """,
        {**os.environ},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("BanktasksCelery ['broker', 'deadletters']")


def test_outside_an_app_every_entry_is_a_clear_error(bt_env):
    import os

    out = run_python(
        """
        import core
        from plugins.health import system_health_check
        for call in (core.current, lambda: core.session_scope(),
                     lambda: system_health_check.delay()):
            try:
                call()
            except core.NoAppError as exc:
                print("NoAppError:", exc)
        import sys
        print("default app built:", "core.celery" in sys.modules)
        """,
        {**os.environ},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len([line for line in lines if line.startswith("NoAppError:")]) == 3
    assert "from core.celery import app" in lines[0]  # says what to do
    assert lines[2].startswith("NoAppError: system_health_check: ")  # says which task
    assert lines[-1] == "default app built: False"


def test_celery_command_finds_the_default_app_as_core_and_as_core_celery(bt_env):
    import os

    for target in ("core", "core.celery", "config"):
        out = subprocess.run(
            [sys.executable, "-m", "celery", "-A", target, "report"],
            env={**os.environ, "BANKTASKS_PLUGINS": "health", "REDIS_URL": "redis://127.0.0.1:1/0"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "'health.system_health_check': {'queue': 'health'}" in out.stdout  # our app


def test_a_config_error_under_celery_is_one_line_and_exit_2(bt_env):
    import os

    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "core", "report"],
        env={**os.environ, "BANKTASKS_PLUGINS": "nosuchplugin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("banktasks: configuration error: BANKTASKS_PLUGINS=")
    assert len(out.stderr.strip().splitlines()) == 1


def test_current_follows_celerys_current_app(make_app):
    first = make_app("health")
    second = make_app("health")
    assert core.current_app() is second
    first.set_current()
    assert core.current() is first.runtime
    plain = Celery("not-banktasks", set_as_current=True)
    with pytest.raises(NoAppError, match="no banktasks app"):
        core.current()
    assert plain is not None


class AcmeSettings(PluginSettings):
    threshold: int = 5


@task
def ping(n: int) -> int:
    """Echo."""
    return n


def acme_module(name: str = "acme_core_test") -> ModuleType:
    module = ModuleType(name)
    module.register_settings = hookimpl(lambda: ("acme", AcmeSettings))  # type: ignore[attr-defined]
    module.register_tasks = hookimpl(lambda: [ping])  # type: ignore[attr-defined]
    return module


def test_plugins_by_entry_point_name_or_explicit_name(make_app):
    app = make_app("health", ("acme", acme_module()), plugin_settings={"acme": {"threshold": 9}})
    assert "acme.ping" in app.tasks and "health.system_health_check" in app.tasks
    assert app.runtime.settings_for("acme").threshold == 9
    assert app.runtime.plugins.infos["acme"].source == "registered directly"
    assert "(entry point)" in app.runtime.plugins.infos["health"].source


def test_a_module_may_name_itself_with_banktasks_name(make_app):
    module = acme_module("some.deep.module_name")
    module.banktasks_name = "acme"  # type: ignore[attr-defined]
    assert "acme.ping" in make_app(module).tasks


def test_unknown_entry_point_name_and_unknown_plugin_setting_are_clear(make_app):
    with pytest.raises(ConfigError, match=r"plugins=\['nope'\]: no installed plugin"):
        make_app("nope")
    with pytest.raises(ConfigError, match=r"unknown key.*threshhold"):
        make_app(("acme", acme_module()), plugin_settings={"acme": {"threshhold": 1}})


def test_default_plugins_are_in_every_app_and_only_the_deny_list_blocks_them(make_app):
    app = make_app("health")
    assert {"broker", "deadletters", "flower", "demo"} <= set(app.runtime.plugins.enabled())
    blocked = make_app("health", banktasks_disable=["deadletters"])
    assert "deadletters" not in blocked.runtime.plugins.enabled()
    assert "core_failed_tasks" in core.db.Base.metadata.tables  # the model was imported once
    assert "on_task_failed" not in blocked.runtime.plugins.infos["health"].hooks


def test_a_plugin_broker_wins_and_no_broker_at_all_is_a_clear_error(bt_env):
    class Broker:
        url = "redis://127.0.0.1:6399/0"
        started = 0

        def start(self) -> None:
            Broker.started += 1

    plugin = ModuleType("mybroker")
    plugin.register_broker = hookimpl(tryfirst=True)(lambda settings: Broker())  # type: ignore[attr-defined]
    app = create_app(load_settings(), plugins=[plugin])
    assert app.conf.broker_url == Broker.url
    app.ensure_broker()
    app.ensure_broker()
    assert Broker.started == 1
    with pytest.raises(ConfigError, match="REDIS_URL is not set and no plugin runs a broker"):
        create_app(load_settings(banktasks_disable=["broker"]), plugins=[])


def test_on_task_failed_reaches_any_plugin_in_the_worker_process(make_app):
    seen = []
    listener = ModuleType("listener")
    listener.on_task_failed = hookimpl(  # type: ignore[attr-defined]
        lambda task, task_id, exception, kwargs: seen.append((task.name, task_id, kwargs))
    )
    app = make_app(("acme", acme_module()), listener)
    app.conf.task_always_eager = True  # the signal machinery, without a worker
    result = app.tasks["acme.ping"].apply(kwargs={"n": "not a number"})
    assert result.failed()
    assert seen and seen[0][0] == "acme.ping"


def test_the_core_names_no_plugin_and_knows_no_plugin_prefix():
    """Outside its default plugins, no core module names an installed plugin or its
    settings prefix (import-linter separately forbids importing one)."""
    import re
    from pathlib import Path

    from core.plugins import installed_entry_points

    names = sorted(installed_entry_points())
    assert {"fraud", "reports", "notifications", "export", "health"} <= set(names)
    quoted, prefixes = "|".join(names), "|".join(n.upper() for n in names)
    words = re.compile(rf"""["']({quoted})["'.]|\b({prefixes})_[A-Z]""")
    core_dir = Path(core.__file__).parent
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(core_dir.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if words.search(line)
    ]
    assert found == []
