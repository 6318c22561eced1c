"""What a running app knows: settings, plugins, per-plugin settings, the database.

Tasks reach it with `core.current()`: `current().settings_for("fraud")`,
`current().hook.on_fraud_alert(alert=…)`, `current().db.session()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.db import Database

if TYPE_CHECKING:
    from celery import Celery

    from core.plugins import PluginSet
    from core.settings import PluginSettings, Settings


@dataclass
class Runtime:
    """The state of one banktasks app; attached to the Celery app as `app.runtime`."""

    settings: Settings
    plugins: PluginSet
    plugin_settings: dict[str, PluginSettings]
    db: Database
    tasks: dict[str, Any] = field(default_factory=dict)

    @property
    def hook(self) -> Any:
        """The pluggy hook relay: `current().hook.on_report_generated(report=…)`."""
        return self.plugins.pm.hook

    def settings_for(self, plugin: str) -> Any:
        """The settings model instance of one plugin."""
        return self.plugin_settings[plugin]

    def is_enabled(self, plugin: str) -> bool:
        """True if the plugin is installed and enabled."""
        info = self.plugins.infos.get(plugin)
        return bool(info and info.enabled)


def current_app() -> Celery:
    """The banktasks Celery app of this process (the worker's, or the default one)."""
    from celery import current_app as celery_current

    app = celery_current._get_current_object()
    if getattr(app, "runtime", None) is None:
        from core.app import get_app

        app = get_app()
    return app


def current() -> Runtime:
    """The Runtime of the current app."""
    return current_app().runtime  # type: ignore[attr-defined,no-any-return]
