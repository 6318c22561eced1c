"""The `delivery` default plugin's hook implementations and its task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
from celery import signals

from core import BanktasksTask, Schedule, current_app, get_logger, hookimpl, task
from core.default_plugins.delivery import ledger
from core.default_plugins.delivery.api import PLUGIN, settings_of, sweep_once
from core.default_plugins.delivery.cli import delivery_group
from core.default_plugins.delivery.integrations import collect_metrics
from core.default_plugins.delivery.settings import DeliverySettings

log = get_logger("banktasks.delivery")
FINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


@task(example={})
def sweep() -> dict[str, Any]:
    """Relay committed outbox rows, then send again what the broker lost (see the plugin)."""
    return sweep_once(current_app())


@hookimpl
def register_settings() -> tuple[str, type[DeliverySettings]]:
    """`DELIVERY_SWEEP_SECONDS`, `DELIVERY_GRACE_SECONDS`, `DELIVERY_MAX_RESENDS`,
    `DELIVERY_OUTBOX_GRACE_SECONDS`."""
    return PLUGIN, DeliverySettings


@hookimpl
def register_tasks() -> list[Any]:
    """The sweep: `delivery.sweep`."""
    return [sweep]


@hookimpl
def register_schedule(settings: DeliverySettings) -> list[Schedule]:
    """The sweep every `DELIVERY_SWEEP_SECONDS`; a sweep not run within the period expires."""
    every = timedelta(seconds=settings.sweep_seconds)
    return [
        Schedule(
            "delivery-sweep",
            sweep,
            every=every,
            options={"expires": float(max(settings.sweep_seconds, 10))},
        )
    ]


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Turn the ledger on for this app's broker connections and settle finished tasks."""
    ledger.install()
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        ledger.OPTION: True,
    }

    def ours(sender: Any) -> bool:
        return getattr(sender, "app", None) is app

    def settle(task_id: Any) -> None:
        try:
            ledger.settle(app.redis_client(), [str(task_id)])
        except Exception as exc:  # the next sweep settles it from its result
            log.warning("delivery.settle_failed", task_id=task_id, error=f"{exc}"[:200])

    def finished(sender: Any = None, task_id: Any = None, state: Any = None, **_: Any) -> None:
        if task_id and state in FINAL and ours(sender):
            settle(task_id)

    def revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
        task_id = getattr(request, "id", None)
        if task_id and (ours(sender) or isinstance(sender, BanktasksTask)):
            settle(task_id)

    receivers = [(signals.task_postrun, finished), (signals.task_revoked, revoked)]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=True)
    app.__dict__["_delivery_receivers"] = receivers  # keeps the weak receivers alive


@hookimpl
def on_message_rejected(queue: str, reason: str, message: dict[str, Any]) -> None:
    """A message set aside unread never runs: it is settled, not sent again."""
    task_id = message.get("id")
    if task_id:
        ledger.settle(current_app().redis_client(), [str(task_id)])


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks delivery status|sweep`."""
    cli.add_command(delivery_group)


__all__ = ["collect_metrics", "settings_of"]
