"""The default app of this process, Celery's way: `from core.celery import app`.

`celery -A core worker` finds it too (Celery looks for `core.app`, then
`core.celery`). It is built from the environment (every installed plugin,
settings from env, `.env` and `banktasks.toml`) the first time `app` is read.
A wrong setting is one line on stderr and exit status 2 under the `celery`
command; elsewhere it raises `core.ConfigError`.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.factory import BanktasksCelery, create_app

_app: BanktasksCelery | None = None
_lock = threading.Lock()


def default_app() -> BanktasksCelery:
    """The default app, built once per process from the environment."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                try:
                    _app = create_app()
                except ConfigError as exc:
                    if not _under_celery_command():
                        raise
                    print(f"banktasks: configuration error: {exc}", file=sys.stderr, flush=True)
                    raise SystemExit(2) from None
    _app.set_current()
    return _app


def reset_default_app() -> None:
    """Forget the default app: the next `app` is built again (after the environment changed)."""
    global _app
    _app = None


def _under_celery_command() -> bool:
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return argv0.name == "celery" or argv0.parent.name == "celery"


def __getattr__(name: str) -> Any:
    if name == "app":
        return default_app()
    raise AttributeError(f"module 'core.celery' has no attribute {name!r}")
