"""`banktasks outbox`: operators see what was sent and why something failed."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest
from click.testing import CliRunner

from plugins.notifications import PermanentFailure, send_email_notification
from plugins.notifications.plugin import register_commands


@pytest.fixture
def cli() -> click.Group:
    @click.group()
    def group() -> None:
        """banktasks stand-in"""

    register_commands(cli=group)
    return group


def test_outbox_lists_entries_with_masked_recipients(notif_app: Any, cli: click.Group) -> None:
    notif_app()
    send_email_notification(user_id=1, subject="Hi", message="Body", idempotency_key="ok-1")
    with pytest.raises(PermanentFailure):
        send_email_notification(user_id=2, subject="Hi", message="Body", idempotency_key="bad-2")

    table = CliRunner().invoke(cli, ["outbox"])
    assert table.exit_code == 0, table.output
    assert "ok-1" in table.output and "bad-2" in table.output
    assert "u***@example.com" in table.output and "user1@example.com" not in table.output

    failed = CliRunner().invoke(cli, ["outbox", "--status", "failed", "--json"])
    assert failed.exit_code == 0, failed.output
    (row,) = json.loads(failed.output)
    assert row["key"] == "bad-2" and row["status"] == "failed" and row["attempts"] == 1
    assert row["error"] == "PermanentFailure: user 2 is inactive; nothing was sent"

    none = CliRunner().invoke(cli, ["outbox", "--status", "pending"])
    assert none.output.strip() == "outbox: no entries with status pending"
