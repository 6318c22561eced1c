"""The endpoint: `/metrics` behind basic auth, on METRICS_ADDRESS:METRICS_PORT.

A small threaded HTTP server from the standard library (prometheus-client's own
has no authentication). Every request to `/metrics` needs one of the
METRICS_BASIC_AUTH logins (compared in constant time); anything else is 404.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core import get_logger

log = get_logger("banktasks.metrics")
REALM = 'Basic realm="banktasks metrics", charset="UTF-8"'


def check_login(header: str | None, logins: list[tuple[bytes, bytes]]) -> bool:
    """True when the Authorization header carries one of `logins` (constant time each)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, sep, password = base64.b64decode(header[6:], validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    if not sep:
        return False
    found = False
    for known_user, known_password in logins:
        same_user = hmac.compare_digest(user, known_user)
        same_password = hmac.compare_digest(password, known_password)
        found |= same_user and same_password
    return found


def parse_logins(basic_auth: str) -> list[tuple[bytes, bytes]]:
    """`user:password,user2:password2` → [(user, password), ...] (bytes, UTF-8)."""
    pairs = []
    for pair in basic_auth.split(","):
        user, _, password = pair.partition(":")
        pairs.append((user.encode(), password.encode()))
    return pairs


def make_server(
    address: str, port: int, registry: Any, logins: list[tuple[bytes, bytes]]
) -> ThreadingHTTPServer:
    """A server (not yet serving) that answers `/metrics` from `registry` to `logins`."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        server_version = "banktasks-metrics"
        sys_version = ""

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._reply(404, b"not found: the metrics are at /metrics\n", "text/plain")
                return
            if not check_login(self.headers.get("Authorization"), logins):
                self._reply(401, b"login required\n", "text/plain", {"WWW-Authenticate": REALM})
                return
            try:
                body = generate_latest(registry)
            except Exception as exc:
                log.error("metrics_scrape_failed", error=f"{type(exc).__name__}: {exc}")
                self._reply(500, b"scrape failed, see the endpoint's log\n", "text/plain")
                return
            self._reply(200, body, CONTENT_TYPE_LATEST)

        def _reply(
            self, code: int, body: bytes, kind: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics_request", line=format % args)

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    return server


def use_tls(server: ThreadingHTTPServer, certfile: str, keyfile: str) -> None:
    """Serve HTTPS with this certificate and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    server.socket = context.wrap_socket(server.socket, server_side=True)
