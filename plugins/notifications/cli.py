"""`banktasks outbox`: what the notifications outbox holds (recipients masked)."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from core import current
from core.logging import redact_text
from plugins.notifications.models import OutboxEntry, OutboxStatus
from plugins.notifications.outbox import split_key

COLUMNS = (
    "id",
    "source",
    "key",
    "kind",
    "user_id",
    "to",
    "status",
    "attempts",
    "created_at",
    "error",
)


def outbox_rows(status: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest outbox entries as JSON-safe dicts, recipients masked.

    `source` says whose key it is (`caller`: an `idempotency_key` a caller gave, `event`:
    a hook's e-mail, `task`/`args`: derived, `legacy`: a row from before the key
    namespaces) and `key` is the key within it; `stored_key` is the row's own column.
    """
    query = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(limit)
    if status:
        query = query.where(OutboxEntry.status == status)
    with current().db.session() as session:
        entries = list(session.scalars(query))
    return [
        {
            "id": e.id,
            **dict(zip(("source", "key"), split_key(e.idempotency_key), strict=True)),
            "stored_key": e.idempotency_key,
            "kind": e.kind,
            "user_id": e.user_id,
            "to": redact_text(e.recipient) if e.recipient else None,
            "status": e.status,
            "attempts": e.attempts,
            "channel": e.channel,
            "message_id": e.message_id,
            "created_at": e.created_at.isoformat(),
            "sent_at": e.sent_at.isoformat() if e.sent_at else None,
            "error": e.error,
        }
        for e in entries
    ]


@click.command("outbox")
@click.option(
    "--status",
    type=click.Choice([s.value for s in OutboxStatus]),
    help="Only entries with this status (e.g. failed).",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def outbox_command(status: str | None, limit: int, as_json: bool) -> None:
    """List the newest notification outbox entries (status, attempts, why it failed)."""
    rows = outbox_rows(status, limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("outbox: no entries" + (f" with status {status}" if status else ""))
        return
    table = [[str(row[c] if row[c] is not None else "-") for c in COLUMNS] for row in rows]
    widths = [min(60, max(len(c), *(len(r[i]) for r in table))) for i, c in enumerate(COLUMNS)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for r in table:
        click.echo("  ".join(v[:w].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
