"""banktasks-sanctions: sanctions screening for banktasks (the plugin tutorial's example).

Public surface: `SanctionsSettings`, the tables `SanctionsEntry` and
`SanctionsListState`, the task `refresh_sanctions_list`, `normalise_name`, and what
it gives its neighbours: the fraud rule `SanctionedCounterparty`
(`sanctioned_counterparty`) and the health check `ListFreshCheck`
(`sanctions_list_fresh`). The hook implementations are in `banktasks_sanctions.plugin`.
"""

from __future__ import annotations

from banktasks_sanctions.integrations import ListFreshCheck, SanctionedCounterparty
from banktasks_sanctions.models import SanctionsEntry, SanctionsListState
from banktasks_sanctions.screening import normalise_name
from banktasks_sanctions.settings import PLUGIN, SanctionsSettings
from banktasks_sanctions.tasks import SanctionsListError, refresh_sanctions_list

__all__ = [
    "PLUGIN",
    "ListFreshCheck",
    "SanctionedCounterparty",
    "SanctionsEntry",
    "SanctionsListError",
    "SanctionsListState",
    "SanctionsSettings",
    "normalise_name",
    "refresh_sanctions_list",
]
