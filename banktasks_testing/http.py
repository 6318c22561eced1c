"""A small HTTP client for tests of what a server answers (Flower, a metrics endpoint)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any


def http_status(
    url: str,
    auth: str | None = None,
    *,
    data: Any = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> int:
    """The HTTP status `url` answers: a GET, or a POST of `data` as JSON when given;
    `auth` is `user:password` for basic auth. 0 when nothing answers (not listening)."""
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0
