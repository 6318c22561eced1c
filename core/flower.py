"""Flower with authentication always on, `/metrics` included.

Flower 2 serves `/metrics` (Prometheus) and `/healthcheck` without asking for
credentials even when basic auth is configured. `secure_flower()` puts
`/metrics` behind the same authentication as the UI and the API, and makes
`FLOWER_BASIC_AUTH` (validated by the core settings) the credentials whether
Flower is started as `banktasks flower` or `celery -A core flower`.
`/healthcheck` stays open: it returns only "OK" and is what load balancers probe.
"""

from __future__ import annotations

import os
from typing import Any

_patched = False


def secure_flower(basic_auth: str) -> None:
    """Require authentication on Flower's `/metrics`; default FLOWER_BASIC_AUTH from settings."""
    global _patched
    os.environ.setdefault("FLOWER_BASIC_AUTH", basic_auth)
    if _patched:
        return
    import tornado.web
    from flower.views import monitor

    original = monitor.Metrics.get

    @tornado.web.authenticated
    async def get(self: Any) -> None:
        await original(self)

    monitor.Metrics.get = get  # type: ignore[method-assign]
    _patched = True
