"""The banktasks app with only the bench no-op plugin: `celery -A bench.bt_app worker`.

Settings come from the environment as for `celery -A core` (REDIS_URL, DATABASE_URL,
BANKTASKS_VAR_DIR, LOG_LEVEL); BENCH_WORKER=1 builds the app at import.
"""

from __future__ import annotations

import os
from typing import Any

from bench import noop_plugin


def make_app(**overrides: Any) -> Any:
    """create_app(load_settings(**overrides), plugins=[bench.noop_plugin])."""
    from core import create_app, load_settings

    return create_app(load_settings(**overrides), plugins=[noop_plugin])


app = make_app() if os.environ.get("BENCH_WORKER") else None
