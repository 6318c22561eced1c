"""Default plugin `delivery`: nothing submitted is lost between the caller and a worker.

- The **ledger** (`ledger`): every task message published through an app is
  recorded on the broker, in the same MULTI/EXEC as its LPUSH, until its task
  reaches a final state.
- The **reconciler** (`reconciler`): a sweep finds submissions that are nowhere
  (not queued, not unacknowledged, no final result) and sends them again with the
  same task id and arguments.
- The **outbox relay**: committed rows of `core_task_outbox`
  (`task.delay_on_commit(session, ...)`, see `core.outbox`) whose own publish did
  not happen are published.

Beat sends the sweep (`delivery.sweep`) every `DELIVERY_SWEEP_SECONDS`;
`banktasks delivery status|sweep` shows and runs it by hand. Metrics (with the
`metrics` plugin): `banktasks_delivery_tracked`, `banktasks_delivery_resent_total`,
`banktasks_delivery_given_up_total`, `banktasks_delivery_outbox_pending`.
`BANKTASKS_DISABLE=delivery` turns all of it off. See docs/reliability.md.
"""

from core.default_plugins.delivery.plugin import (
    collect_metrics,
    configure_app,
    on_message_rejected,
    register_commands,
    register_schedule,
    register_settings,
    register_tasks,
)

__all__ = [
    "collect_metrics",
    "configure_app",
    "on_message_rejected",
    "register_commands",
    "register_schedule",
    "register_settings",
    "register_tasks",
]
