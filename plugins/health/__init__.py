"""health: database, broker, queue backlog and pending-transaction checks, plus any check a
plugin adds.

Public surface (what other packages may import from `plugins.health`; a plugin
that adds a check needs none of it, since its check may return a plain dict):

- `HealthCheck` (protocol of a check), `CheckContext` (what `run(ctx)` gets:
  `app`, `db`, `now`, `timeout` and `settings`, the registering plugin's own
  settings), `CheckResult`, `STATUSES` and `worst()`, defined in `plugins.health.api`;
- the built-in checks `DatabaseCheck`, `BrokerCheck`, `QueueBacklogCheck`,
  `PendingTransactionsCheck`;
- `HealthSettings`; `run_checks(app)` (run every check now, in this process);
- the task `system_health_check` (`health.system_health_check`);
- `hookspecs`: `register_health_checks`.

The hook implementations live in `plugins.health.plugin` (the entry point).
"""

from __future__ import annotations

from plugins.health import hookspecs
from plugins.health.api import STATUSES, CheckContext, CheckResult, HealthCheck, worst
from plugins.health.backlog import QueueBacklogCheck
from plugins.health.checks import BrokerCheck, DatabaseCheck, PendingTransactionsCheck
from plugins.health.runner import run_checks
from plugins.health.settings import HealthSettings
from plugins.health.tasks import system_health_check

__all__ = [
    "STATUSES",
    "BrokerCheck",
    "CheckContext",
    "CheckResult",
    "DatabaseCheck",
    "HealthCheck",
    "HealthSettings",
    "PendingTransactionsCheck",
    "QueueBacklogCheck",
    "hookspecs",
    "run_checks",
    "system_health_check",
    "worst",
]
