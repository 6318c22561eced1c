"""The banktasks app with the bench no-op plugin: `celery -A bench.bt_app worker`.

Settings come from the environment as for `celery -A core` (REDIS_URL, DATABASE_URL,
BANKTASKS_VAR_DIR, LOG_LEVEL); BENCH_WORKER=1 builds the app at import.
BENCH_ALL_PLUGINS=1 adds every installed plugin (as `celery -A core` has them);
BENCH_NO_FREEZE=1 turns `gc.freeze` off, to measure what it saves (bench only).
"""

from __future__ import annotations

import gc
import os
from typing import Any

if os.environ.get("BENCH_NO_FREEZE"):
    gc.freeze = lambda: None  # before core is imported: it freezes at import too

from bench import noop_plugin


def make_app(all_plugins: bool = False, **overrides: Any) -> Any:
    """create_app(load_settings(**overrides)) with the bench plugin (and all installed ones)."""
    from core import create_app, load_settings
    from core.plugins import installed_entry_points

    plugins: list[Any] = [*sorted(installed_entry_points())] if all_plugins else []
    return create_app(load_settings(**overrides), plugins=[*plugins, noop_plugin])


app = (
    make_app(all_plugins=bool(os.environ.get("BENCH_ALL_PLUGINS")))
    if os.environ.get("BENCH_WORKER")
    else None
)
