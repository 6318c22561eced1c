"""The `delivery` plugin's implementation of another plugin's hook: the metrics default
plugin's `collect_metrics(ctx)` (called only when metrics is enabled)."""

from __future__ import annotations

from typing import Any

from core import hookimpl
from core.default_plugins.delivery.api import status


@hookimpl
def collect_metrics(ctx: Any) -> list[dict[str, Any]]:
    """Metrics' hook: tracked submissions, re-sends, give-ups and the outbox backlog."""
    now = status(ctx.app)
    totals = now["totals"]
    samples: list[dict[str, Any]] = [
        {
            "name": "tracked",
            "value": now["tracked"],
            "help": "Submissions the delivery ledger tracks (published, not finished)",
        },
        {
            "name": "suspect",
            "value": now["suspect"],
            "help": "Tracked submissions the last sweep found nowhere (sent again next sweep)",
        },
        {
            "name": "resent",
            "type": "counter",
            "value": totals.get("resent", 0),
            "help": "Submissions the reconciler sent again after the broker lost them",
        },
        {
            "name": "given_up",
            "type": "counter",
            "value": totals.get("given_up", 0),
            "help": "Submissions lost again after DELIVERY_MAX_RESENDS re-sends",
        },
    ]
    pending = now["outbox"].get("pending")
    if pending is not None:
        samples.append(
            {
                "name": "outbox_pending",
                "value": pending,
                "help": "Committed outbox rows not yet published",
            }
        )
    return samples
