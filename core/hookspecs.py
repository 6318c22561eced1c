"""Hook specifications of the core. Plugins implement them with `@core.hookimpl`.

Plugins that want hooks of their own (fraud rules, report formats, …) add them
through `register_hookspecs`, the way pytest plugins use `pytest_addhooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.markers import hookspec

if TYPE_CHECKING:
    import click
    import pluggy
    from celery import Celery

    from core.schedule import Schedule
    from core.settings import PluginSettings, Settings
    from core.taskdef import TaskDef


@hookspec
def register_hookspecs(pm: pluggy.PluginManager) -> None:
    """Add the hookspecs this plugin owns: call `pm.add_hookspecs(module)`."""


@hookspec
def register_settings() -> tuple[str, type[PluginSettings]] | None:
    """Return `(plugin name, SettingsModel)`; the model subclasses `core.PluginSettings`.

    Its fields are read from `<NAME>_<FIELD>` variables or `[plugins.<name>]` in TOML.
    """
    return None


@hookspec
def register_tasks() -> list[TaskDef]:
    """Return the plugin's tasks: functions decorated with `core.task`.

    Each becomes the Celery task `<plugin name>.<function name>`.
    """
    return []


@hookspec
def register_schedule(settings: PluginSettings) -> list[Schedule]:
    """Return `core.Schedule` entries for Celery beat, given this plugin's settings."""
    return []


@hookspec
def configure_app(app: Celery, settings: Settings) -> None:
    """Have the last word on the Celery app (routes, queues, signals), after the core."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the `banktasks` command line."""
