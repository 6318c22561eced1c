"""Hook specifications of the core. Plugins implement them with `@core.hookimpl`.

Plugins that want hooks of their own (rules, formats, checks, …) add them
through `register_hookspecs`, the way pytest plugins use `pytest_addhooks`.
The default plugins (dead letters, Flower, embedded broker, demo, seed) use
these same hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from core.markers import hookspec

if TYPE_CHECKING:
    from pathlib import Path

    import click
    import pluggy
    from celery import Celery, Task

    from core.schedule import Schedule
    from core.settings import PluginSettings, Settings
    from core.taskdef import TaskDef


class Broker(Protocol):
    """A broker a plugin runs for the app (see `register_broker`)."""

    url: str

    def start(self) -> None:
        """Make sure the broker is up (idempotent); called before the first connection."""


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


@hookspec(firstresult=True)
def register_broker(settings: Settings) -> Broker | None:
    """Return the broker to use when `REDIS_URL` is unset: an object with a `url` and a
    `start()` that the app calls once before its first connection. The first plugin
    that returns one wins; the default `broker` plugin runs an embedded Valkey."""
    return None


@hookspec
def configure_app(app: Celery, settings: Settings) -> None:
    """Have the last word on the Celery app (routes, queues, signals), after the core.

    Raise `core.ConfigError` to stop start-up with one clear line.
    """


@hookspec
def register_migrations() -> str | Path | None:
    """The folder of this plugin's Alembic revisions: its own version chain, which
    `banktasks db upgrade` runs next to the core's and every other plugin's.

    The chain's first revision has `branch_labels = ("<plugin name>",)` and
    `down_revision = None`; later ones revise it. The chain owns the tables whose models
    are defined in the plugin's package: on a database that has none of them they are
    created from the models and the chain is stamped at its head. Migrations may use
    `core.migrate.has_column` and `owns_table`. Return None (or do not implement this
    hook) to have new tables created from the models, without a chain.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the `banktasks` command line."""


@hookspec
def on_task_failed(task: Task, task_id: str, exception: BaseException, kwargs: Any) -> None:
    """Called in the worker when a banktasks task failed for good: retries exhausted,
    an error its retry policy does not list, or invalid arguments. `kwargs` are the
    task's arguments as sent. Must not raise (an error is logged and ignored)."""


@hookspec
def on_message_rejected(queue: str, reason: str, message: dict[str, Any]) -> None:
    """Called in the worker for each message it set aside unread: an item on a queue
    that is not a task message it can run (not JSON, an envelope, headers or body of
    the wrong shape, a body that is not base64 or not JSON, an unknown task name, or
    bigger than `BANKTASKS_MAX_MESSAGE_BYTES` allows). The message is acknowledged
    after the listeners ran (also when one raised): it never comes back.

    `reason` is one of "undecodable message", "malformed message", "oversized message"
    and "unknown task". `message` holds what is known of it, never more than 4 KiB:
    `id` and `task` (the task id and name from its headers, or None), `size` (bytes),
    `fingerprint` (sha256, hex; the same for a redelivered copy), `excerpt` (its first
    4096 bytes, redacted with `core.logging.redact_text`) and `detail` (what was wrong).
    `queue` is the queue it was read from. Must not raise (an error is logged and ignored).
    """
