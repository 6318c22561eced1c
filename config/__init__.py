"""Compatibility with the seed document's commands: `celery -A config worker|beat|flower`.

The seed ran Celery as `-A config`; banktasks' default app is `core.celery.app`.
This package only points there, so `celery -A config inspect active` works verbatim.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from core.celery import default_app

        return default_app()
    raise AttributeError(f"module 'config' has no attribute {name!r}")
