"""Seed-style access to tasks: `from core.tasks import <task name>`, as the seed document does.

Names resolve lazily against the current banktasks app, else the default one
(`core.celery.app`, built on first use): a registered task's function name
(or its full `<plugin>.<function>` name) gives the Celery task; a task of an
installed but disabled plugin raises PluginDisabledError saying so.
"""

from __future__ import annotations

from typing import Any

from core.errors import PluginDisabledError


def resolve(name: str, app: Any = None) -> Any:
    """Find a registered task by function name or full name in `app` (default app)."""
    app = app or _current_or_default()
    if name in app.runtime.tasks:
        return app.tasks[name]
    matches = [full for full, spec in app.runtime.tasks.items() if spec.fn.__name__ == name]
    if len(matches) == 1:
        return app.tasks[matches[0]]
    if len(matches) > 1:
        raise LookupError(f"{name!r} is ambiguous: use one of {', '.join(sorted(matches))}")
    owner = _disabled_owner(name, app)
    if owner:
        raise PluginDisabledError(
            f"task {name!r} belongs to plugin {owner!r}, which is disabled "
            "(see BANKTASKS_PLUGINS / BANKTASKS_DISABLE); enable it to use this task"
        )
    raise AttributeError(
        f"no enabled plugin registers a task named {name!r}; "
        f"registered: {', '.join(sorted(app.runtime.tasks)) or '(none)'}"
    )


def _current_or_default() -> Any:
    from celery import current_app

    app = current_app._get_current_object()
    if getattr(app, "runtime", None) is not None:
        return app
    from core.celery import default_app

    return default_app()


def _disabled_owner(name: str, app: Any) -> str | None:
    """Which installed-but-disabled plugin declares a task of that name, if any."""
    plugin_set = app.runtime.plugins
    for plugin, info in plugin_set.infos.items():
        ep = plugin_set.entry_points.get(plugin)
        if info.enabled or ep is None:
            continue
        try:
            module = ep.load()
        except Exception:  # a broken disabled plugin cannot own the name we look for
            continue
        register = getattr(module, "register_tasks", None)
        if register is None:
            continue
        short = name.split(".", 1)[-1]
        if any(spec.fn.__name__ == short for spec in register() or ()):
            return plugin
    return None


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return resolve(name)
