"""The task `refresh_sanctions_list`: load the CSV named by `SANCTIONS_LIST_PATH` into the
`sanctions_entries` table, replacing the whole list in one transaction."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from core import ConfigError, RetryPolicy, current, get_logger, task
from core.db import dialect_insert, utcnow
from sqlalchemy import delete, insert

from banktasks_sanctions.models import STATE_ID, SanctionsEntry, SanctionsListState
from banktasks_sanctions.screening import normalise_name
from banktasks_sanctions.settings import PLUGIN, SanctionsSettings

log = get_logger(__name__)


class SanctionsListError(ValueError):
    """The file is not a usable sanctions list (not retried: a retry would read the same)."""


def read_list(path: Path) -> list[dict[str, Any]]:
    """The rows of the CSV at `path`, one per distinct normalised name (the first wins).

    An unreadable file raises OSError (retried); a file without a `name` column or
    without any name raises SanctionsListError, so a truncated download never
    replaces the list with nothing.
    """
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "name" not in columns:
            raise SanctionsListError(f"{path}: no `name` column in the header row {columns}")
        reader.fieldnames = columns
        rows: dict[str, dict[str, Any]] = {}
        try:
            for row in reader:
                name = (row.get("name") or "").strip()
                key = normalise_name(name)
                if key:
                    program = (row.get("program") or "").strip() or None
                    rows.setdefault(key, {"name": name, "normalised": key, "program": program})
        except csv.Error as exc:
            raise SanctionsListError(f"{path}: line {reader.line_num}: {exc}") from None
    if not rows:
        raise SanctionsListError(f"{path}: no names; the current list is kept")
    return list(rows.values())


RETRY = RetryPolicy(
    max_retries=3,
    backoff=30,
    backoff_max=600,
    retry_on=(OSError, ConnectionError),  # the file is missing or its share is unreachable
)
"""3 retries, waits drawn from 0-30, 0-60 and 0-120 s: a list still being copied in has
time to arrive. A malformed file (SanctionsListError) fails at once."""


@task(retry=RETRY)
def refresh_sanctions_list() -> dict[str, Any]:
    """Replace the sanctions list with the CSV at `SANCTIONS_LIST_PATH`; idempotent.

    Returns `entries` (names loaded), `source` (the path) and `refreshed_at`.
    """
    runtime = current()
    settings: SanctionsSettings = runtime.settings_for(PLUGIN)
    if settings.list_path is None:
        raise ConfigError("SANCTIONS_LIST_PATH is not set: give the path of the sanctions CSV")
    rows = read_list(settings.list_path)
    now, source = utcnow(), str(settings.list_path)
    state = dialect_insert(runtime.db.dialect)(SanctionsListState).values(
        id=STATE_ID, refreshed_at=now, source=source, entries=len(rows)
    )
    newer = {column: state.excluded[column] for column in ("refreshed_at", "source", "entries")}
    with runtime.db.session() as session:  # one transaction: the old list or the new one
        # The state row first: its lock makes a refresh running at the same time wait.
        session.execute(state.on_conflict_do_update(index_elements=["id"], set_=newer))
        session.execute(delete(SanctionsEntry))
        session.execute(insert(SanctionsEntry), rows)
    log.info("sanctions_list_refreshed", entries=len(rows), source=source)
    return {"entries": len(rows), "source": source, "refreshed_at": now.isoformat()}
