"""What a running app knows: settings, plugins, per-plugin settings, the database.

Tasks and hooks reach it with `core.current()`: `current().settings_for("sanctions")`,
`current().hook.on_report_generated(report=…)`, `current().db.session()`. This
module never builds an app: outside one, `current()` raises `NoAppError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.db import Database
from core.errors import NoAppError
from core.sources import DataTables, native_tables

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import Session

    from core.plugins import PluginSet
    from core.settings import PluginSettings, Settings

NO_APP = (
    "no banktasks app in this process: import the default one (`from core.celery import app`), "
    "or build one with `core.create_app()` first"
)


@dataclass
class Runtime:
    """The state of one banktasks app; attached to the Celery app as `app.runtime`."""

    settings: Settings
    plugins: PluginSet
    plugin_settings: dict[str, PluginSettings]
    db: Database
    tasks: dict[str, Any] = field(default_factory=dict)
    data: DataTables = field(default_factory=native_tables)
    """The users, accounts and transactions to read (`core.sources`): `current().data`."""
    data_db: Database | None = None
    """The database of the bank's mapped tables (read-only); None: `db` holds them."""

    @contextmanager
    def data_session(self, session: Session | None = None) -> Iterator[Session]:
        """A session to read `data` in.

        Without a mapping the core tables live with banktasks' own: `session` itself
        comes back (or, without one, a new session of `db`). With `DATA_MAPPING`, a
        read-only session of the bank's database, closed when the block ends.
        """
        if self.data_db is None and session is not None:
            yield session
            return
        with (self.data_db or self.db).session() as data:
            yield data

    @property
    def hook(self) -> Any:
        """The pluggy hook relay: `current().hook.on_report_generated(report=…)`."""
        return self.plugins.pm.hook

    def settings_for(self, plugin: str) -> Any:
        """The settings model instance of one plugin (by its registered name)."""
        try:
            return self.plugin_settings[plugin]
        except KeyError:
            raise LookupError(
                f"no plugin named {plugin!r} is enabled; enabled: "
                f"{', '.join(sorted(self.plugin_settings)) or '(none)'}"
            ) from None

    def is_enabled(self, plugin: str) -> bool:
        """True if the plugin is installed and enabled."""
        info = self.plugins.infos.get(plugin)
        return bool(info and info.enabled)


def current_app() -> Celery:
    """The banktasks Celery app of this thread (Celery's current app); never builds one."""
    from celery import current_app as celery_current

    app = celery_current._get_current_object()
    if getattr(app, "runtime", None) is None:
        raise NoAppError(NO_APP)
    return app


def current() -> Runtime:
    """The Runtime of the current app (raises NoAppError outside an app)."""
    return current_app().runtime  # type: ignore[attr-defined,no-any-return]
