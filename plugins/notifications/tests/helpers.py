"""Helpers the notifications tests share: test users, outbox rows, queued messages."""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import select

from core.models import User
from plugins.notifications import OutboxEntry


def add_users(app: Any) -> None:
    """Users 1 (active), 2 (inactive), 3 (active, no address), 4 (active)."""
    with app.runtime.db.session() as session:
        session.add_all(
            [
                User(id=1, email="user1@example.com", full_name="Ada Lovelace", is_active=True),
                User(id=2, email="user2@example.com", full_name="Alan Turing", is_active=False),
                User(id=3, email="", full_name="No Address", is_active=True),
                User(id=4, email="user4@example.com", full_name="Grace Hopper", is_active=True),
            ]
        )


def outbox_rows(app: Any) -> list[OutboxEntry]:
    """Every outbox row, oldest first."""
    with app.runtime.db.session() as session:
        return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def queued(app: Any, queue: str = "notifications") -> list[dict[str, Any]]:
    """The task messages waiting in the app's real Valkey queue, oldest first: task, id, kwargs.

    It goes through `app.redis_client()`, so the test broker is started (and emptied
    for this app) even when nothing was sent yet.
    """
    client = app.redis_client()
    found = []
    for raw in reversed(client.lrange(queue, 0, -1)):  # kombu LPUSHes, workers BRPOP
        envelope = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        headers = envelope["headers"]
        found.append({"task": headers["task"], "id": headers["id"], "kwargs": kwargs})
    return found
