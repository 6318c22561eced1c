"""Compatibility with the seed document's commands: `celery -A config worker|beat|flower`.

The seed ran Celery as `-A config`; banktasks' app is `core.app`. This module
only points there, so `celery -A config inspect active` works verbatim too.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in {"app", "celery"}:
        from core.app import get_app_for_celery

        return get_app_for_celery()
    raise AttributeError(f"module 'config' has no attribute {name!r}")
