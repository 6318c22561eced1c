"""The README's third-party channel example works as written (against a real HTTP server)."""

from __future__ import annotations

import json
import re
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import plugins.notifications
from plugins.notifications import PermanentFailure, TemporaryFailure, send_admin_email

README = Path(plugins.notifications.__file__).parent / "README.md"


def readme_block(marker: str) -> str:
    """The README's one Python block that contains `marker`."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (source,) = [b for b in blocks if marker in b]
    return source


def readme_plugin() -> types.ModuleType:
    module = types.ModuleType("acme_slack")
    code = compile(readme_block("class SlackChannel"), "README.md", "exec", dont_inherit=True)
    exec(code, module.__dict__)
    return module


class Webhook(BaseHTTPRequestHandler):
    status = 200
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[Webhook]]]:
    handler = type("Hook", (Webhook,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def test_readme_slack_channel(notif_app: Any, webhook: tuple[str, type[Webhook]]) -> None:
    url, hook = webhook
    notif_app(
        ("acme_slack", readme_plugin()),
        plugin_settings={
            "notifications": {"email_backend": "slack"},
            "acme_slack": {"webhook_url": url},
        },
    )
    assert (
        send_admin_email(subject="Fraud case #3 opened", message="rule: velocity")["status"]
        == "sent"
    )
    assert hook.received == [{"text": "*Fraud case #3 opened*\nrule: velocity"}]

    hook.status = 503
    with pytest.raises(TemporaryFailure, match="Slack answered 503"):
        send_admin_email(subject="Again", message="later")
    hook.status = 404
    with pytest.raises(PermanentFailure, match="Slack answered 404"):
        send_admin_email(subject="Gone", message="never")


def test_readme_test_example_runs(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "acme_slack", readme_plugin())
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("def test_slack"), "README.md", "exec", dont_inherit=True), namespace)
    namespace["test_slack_is_the_channel"](make_app)
