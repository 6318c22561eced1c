"""The export plugin's entry point (`export = "plugins.export.plugin"`).

Implementations of the core hooks (hookspecs, settings, task) and of export's
own `register_export_formats` for the built-in csv and jsonl formats. Export
implements no hook owned by another plugin, and has no schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import hookimpl
from plugins.export import hookspecs
from plugins.export.api import ExportFormat
from plugins.export.formats import BUILTIN_FORMATS
from plugins.export.settings import ExportSettings
from plugins.export.tasks import export_transaction_data


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add `register_export_formats` and `on_export_ready`."""
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_migrations() -> Path:
    """The export plugin's own Alembic version chain (`migrations/`)."""
    return Path(__file__).resolve().parent / "migrations"


@hookimpl
def register_settings() -> tuple[str, type[ExportSettings]]:
    """EXPORT_DIR, EXPORT_MAX_DAYS, EXPORT_SUBMIT_LIMIT_PER_MINUTE."""
    return ("export", ExportSettings)


@hookimpl
def register_tasks() -> list[Any]:
    """The export task (queue "export", no schedule)."""
    return [export_transaction_data]


@hookimpl
def register_export_formats() -> list[ExportFormat]:
    """The built-in formats, registered like any third-party one: csv and jsonl."""
    return list(BUILTIN_FORMATS)


__all__ = [
    "register_export_formats",
    "register_hookspecs",
    "register_settings",
    "register_tasks",
]
