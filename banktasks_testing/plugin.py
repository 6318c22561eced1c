"""The pytest plugin of the testing kit (entry point `pytest11`: loaded wherever
`banktasks[testing]` is installed). Fixtures:

- `bt_env`: an isolated environment: every variable of the core and of every
  installed plugin (its `<NAME>_` prefix and its aliases) removed, a temp var dir
  and SQLite file, cwd in a temp dir so no `.env`/`banktasks.toml` leaks in.
- `make_app(*plugins, plugin_settings=None, **core_settings)`: an app with its
  tables created. Plugins by entry-point name (`"fraud"`), `(name, module)` pairs
  or modules; none given: every installed plugin. No broker is started unless the
  app connects to one (`.delay()`, `.ping()`, …): then a real Valkey, shared by
  the session and emptied for each app, starts on first use.
- `session_broker` (session): that Valkey server (`.url`, `.started`, `.start()`,
  `.flush()`), not started by itself; `broker_url` (session): its URL, started now.
- `e2e`: env + broker + database for end-to-end tests; `e2e.start_worker()` runs a
  real `celery -A core worker` process, stopped (and reaped) at teardown.
- `smtp_server`: a real aiosmtpd SMTP server that records messages.
- `postgres_url` (session) / `pg_database_url`: a real PostgreSQL server from
  Debian's packages and a fresh database per test (skipped with a reason when no
  server binaries exist, unless BANKTASKS_REQUIRE_POSTGRES=1 makes that a failure).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from banktasks_testing.processes import PgCluster, SMTPRecorder, WorkerProcess, pg_bindir
from core import hookimpl


def pytest_configure(config: pytest.Config) -> None:
    """Declare the kit's markers (so `--strict-markers` accepts them in any project)."""
    config.addinivalue_line(
        "markers", "e2e: end-to-end test with real processes (worker, Valkey, SMTP, PostgreSQL)"
    )
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (started by fixtures)")
    config.addinivalue_line("markers", "slow: long-running")


@cache
def plugin_env_names() -> tuple[tuple[str, ...], frozenset[str]]:
    """(prefixes, exact names) of every variable the core and the installed plugins read."""
    from core.plugins import DEFAULT_PLUGINS, build_plugin_set, installed_entry_points
    from core.settings import Settings

    prefixes = {"BANKTASKS_"} | {f"{name.upper()}_" for name in installed_entry_points()}
    exact = {name.upper() for name in Settings.model_fields}
    models = []
    for name in [*installed_entry_points(), *DEFAULT_PLUGINS]:
        try:  # one at a time: a plugin that fails to load still has its prefix cleared
            plugin_set = build_plugin_set(plugins=[name] if name not in DEFAULT_PLUGINS else [])
        except Exception:
            continue
        models += [result for _plugin, result in plugin_set.calls("register_settings")]
    for name, model in models:
        prefixes.add(f"{name.upper()}_")
        for field_info in model.model_fields.values():
            alias = field_info.validation_alias
            choices = getattr(alias, "choices", None) or ([alias] if alias else [])
            exact.update(str(a).upper() for a in choices if isinstance(a, str))
    return tuple(sorted(prefixes)), frozenset(exact)


def clear_banktasks_env(
    monkeypatch: pytest.MonkeyPatch, extra_prefixes: tuple[str, ...] = ()
) -> None:
    """Remove every variable that banktasks or an installed plugin would read."""
    prefixes, exact = plugin_env_names()
    prefixes = prefixes + extra_prefixes
    for key in list(os.environ):
        if key.upper() in exact or key.upper().startswith(prefixes):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def bt_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An isolated banktasks environment; returns the variables it set."""
    clear_banktasks_env(monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    env = {
        "BANKTASKS_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'banking.db'}",
        "BANKTASKS_CONFIG": str(work / "banktasks.toml"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from core.celery import reset_default_app

    reset_default_app()
    yield env
    reset_default_app()


class SessionValkey:
    """The session's Valkey server (the embedded one): its URL is known before it runs."""

    def __init__(self, folder: Path) -> None:
        from core.default_plugins.broker import EmbeddedValkey

        self.server = EmbeddedValkey(folder)
        self.url = self.server.url()
        self.started = False

    def start(self) -> str:
        """Start it (once); return its URL."""
        if not self.started:
            self.server.ensure_running()
            self.started = True
        return self.url

    def flush(self) -> None:
        """Empty every key (queues, results, locks)."""
        import redis

        redis.Redis.from_url(self.start()).flushall()


@dataclass
class _LazyBroker:
    """The broker a test app gets: the session's Valkey, started and emptied on first use."""

    valkey: SessionValkey
    url: str = ""
    flushed: bool = field(default=False)

    def start(self) -> None:
        if not self.flushed:
            self.valkey.flush()
            self.flushed = True


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionValkey]:
    """The session's Valkey server; it starts when an app (or `broker_url`) first needs it."""
    valkey = SessionValkey(tmp_path_factory.mktemp("valkey"))
    yield valkey
    if valkey.started:
        valkey.server.stop()


@pytest.fixture(scope="session")
def broker_url(session_broker: SessionValkey) -> str:
    """A real Valkey server (the embedded one) for the whole test session, started now."""
    return session_broker.start()


def _test_broker_plugin(valkey: SessionValkey) -> Any:
    class TestBroker:
        banktasks_name = "testing_broker"

        @hookimpl(tryfirst=True)
        def register_broker(self, settings: Any) -> _LazyBroker:
            return _LazyBroker(valkey, valkey.url)

    return TestBroker()


@pytest.fixture
def make_app(
    bt_env: dict[str, str], session_broker: SessionValkey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Any]]:
    """Factory: `make_app("fraud", ("acme", acme_module), plugin_settings={"fraud":
    {"large_amount": 5000}}, log_level="DEBUG")` → an app with its tables created.

    No plugin given (and no `plugins=`): every installed plugin. `plugin_settings`
    maps a plugin name to field values (checked like a `[plugins.<name>]` TOML
    table); other keyword arguments are core settings. The app's broker is the
    session's Valkey, started and emptied when the app first connects to it.
    """
    from core import create_app, load_settings
    from core.plugins import installed_entry_points

    created: list[Any] = []

    def factory(
        *specs: Any,
        plugins: list[Any] | None = None,
        plugin_settings: dict[str, dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> Any:
        chosen = list(specs) + list(plugins or [])
        if not specs and plugins is None:
            chosen = list(installed_entry_points())
        overrides.setdefault("redis_url", "")
        settings = load_settings(**overrides)
        tables = dict(settings._plugin_tables)
        tables.update(plugin_settings or {})
        settings._plugin_tables = tables
        app = create_app(settings, plugins=[*chosen, _test_broker_plugin(session_broker)])
        app.runtime.db.create_all()
        created.append(app)
        return app

    yield factory
    for app in created:
        app.runtime.db.dispose()


@dataclass
class E2E:
    """An end-to-end environment: broker URL, database, env vars, workers."""

    tmp: Path
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    workers: list[WorkerProcess] = field(default_factory=list)

    def app(self, **overrides: Any) -> Any:
        """Build the in-process app from the same environment the workers see."""
        from core import create_app, load_settings
        from core.celery import reset_default_app

        reset_default_app()
        app = create_app(load_settings(**overrides))
        app.runtime.db.create_all()
        return app

    def start_worker(self, **kwargs: Any) -> WorkerProcess:
        """Start a real worker process (stopped at teardown)."""
        env = {**os.environ, **self.env}
        worker = WorkerProcess(env, self.tmp / f"worker{len(self.workers)}.log", **kwargs)
        self.workers.append(worker)
        return worker.start()

    def set(self, **variables: str) -> None:
        """Set environment variables for this process and workers started after."""
        for key, value in variables.items():
            self.env[key] = value
            self.monkeypatch.setenv(key, value)  # undone at teardown


@pytest.fixture
def e2e(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    bt_env: dict[str, str],
    broker_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[E2E]:
    """Real broker + SQLite file + environment for end-to-end tests with real workers.

    Workers import what the test session imports: the project's root is on their
    PYTHONPATH (a plugin under test need not be installed).
    """
    import redis

    redis.Redis.from_url(broker_url).flushall()
    monkeypatch.setenv("REDIS_URL", broker_url)
    paths = [str(request.config.rootpath), str(Path(__file__).resolve().parent.parent)]
    pythonpath = os.pathsep.join(p for p in [*paths, os.environ.get("PYTHONPATH", "")] if p)
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    env = {**bt_env, "REDIS_URL": broker_url, "PYTHONPATH": pythonpath}
    harness = E2E(tmp_path, env, monkeypatch)
    yield harness
    for worker in harness.workers:
        worker.stop()


@pytest.fixture
def smtp_server() -> Iterator[SMTPRecorder]:
    """A started SMTPRecorder, stopped at teardown."""
    server = SMTPRecorder().start()
    yield server
    server.stop()


def require_pg_bindir() -> Path:
    """The server binaries; skip the test without them (fail with BANKTASKS_REQUIRE_POSTGRES=1)."""
    bindir = pg_bindir()
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        message = "no PostgreSQL server binaries (apt-get install postgresql)"
        if os.environ.get("BANKTASKS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return bindir


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session; yields a URL without database name."""
    cluster = PgCluster(require_pg_bindir()).init()
    try:
        yield cluster.url
    finally:
        cluster.destroy()


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{postgres_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{postgres_url}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
