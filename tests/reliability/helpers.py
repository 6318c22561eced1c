"""Shared helpers of the fault-injection suite: counting effects in the database and results."""

from __future__ import annotations

import hashlib
import re
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from core.default_plugins.deadletters import FailedTask
from plugins.export.models import ExportRecord
from plugins.fraud import FraudAlert
from plugins.notifications.models import OutboxEntry


def rows(app: Any, model: Any, *where: Any) -> list[Any]:
    """Every row of `model` (detached), optionally filtered."""
    with app.runtime.db.session() as session:
        return list(session.scalars(select(model).where(*where)))


def count(app: Any, model: Any, *where: Any) -> int:
    """How many rows of `model` match."""
    with app.runtime.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def alerts(app: Any) -> list[FraudAlert]:
    return rows(app, FraudAlert)


def exports(app: Any) -> list[ExportRecord]:
    return rows(app, ExportRecord)


def outbox(app: Any) -> list[OutboxEntry]:
    return rows(app, OutboxEntry)


def dead_letters(app: Any) -> list[FailedTask]:
    return rows(app, FailedTask)


def outbox_settled(app: Any) -> bool:
    """True when no outbox row is waiting to be (re)sent."""
    return count(app, OutboxEntry, OutboxEntry.status == "pending") == 0


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def duplicates(values: list[Any]) -> int:
    """How many values occur more than once (extra copies counted)."""
    return sum(n - 1 for n in Counter(values).values() if n > 1)


def node_name(worker: Any) -> str:
    """The Celery node name of a WorkerProcess (`-n name@%h`)."""
    return f"{worker.name}@{socket.gethostname()}"


def task_states(app: Any, ids: list[str]) -> Counter[str]:
    """Result states of many task ids, read from the result backend in one pipeline."""
    import json

    client = app.redis_client()
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.get(f"celery-task-meta-{task_id}")
    states: Counter[str] = Counter()
    for raw in pipe.execute():
        states[json.loads(raw)["status"] if raw else "PENDING"] += 1
    return states


def result_meta(app: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored result (status, result, worker, …) of each task id that has one."""
    import json

    client = app.redis_client()
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.get(f"celery-task-meta-{task_id}")
    return {i: json.loads(raw) for i, raw in zip(ids, pipe.execute(), strict=True) if raw}


RETRY_LINE = re.compile(r"Retry in (\d+(?:\.\d+)?)s")


def retry_waits(log: str) -> list[float]:
    """The retry countdowns a worker logged (`Task … retry: Retry in 3s: …`)."""
    return [float(m) for m in RETRY_LINE.findall(log)]


RECONCILER = {
    # the delivery plugin's reconciler on beat, quick enough for a test to see it work:
    # a lost message is sent again 5 s (grace) + two sweeps 5 s apart after its publish
    "DELIVERY_SWEEP_SECONDS": "1",
    "DELIVERY_GRACE_SECONDS": "5",
    # beat sends nothing but the sweep (the scenarios count every task they send)
    "HEALTH_SCHEDULE": "off",
    "FRAUD_SCHEDULE": "off",
    "REPORTS_SCHEDULE": "off",
    "EXPORT_SCHEDULE": "off",
    "NOTIFICATIONS_SCHEDULE": "off",
}
"""Environment of the scenarios that run the delivery reconciler (see start_beat)."""


def start_beat(env: dict[str, str], folder: Path) -> Any:
    """A real `celery -A core beat` process (its log: folder/beat.log); stop it with
    banktasks_testing.processes.stop_group."""
    import os
    import subprocess
    import sys

    schedule = str(folder / "beat-schedule")
    log = open(folder / "beat.log", "ab")  # noqa: SIM115 - inherited by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "core", "beat", "-l", "INFO", "-s", schedule],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return proc


def ledger_totals(app: Any) -> dict[str, int]:
    """The delivery reconciler's totals (resent, given_up, sweeps, ...)."""
    from core.default_plugins.delivery import ledger

    return {k: int(v) for k, v in ledger.stats(app.redis_client()).items()}


RUNS = int(__import__("os").environ.get("BANKTASKS_RELIABILITY_RUNS", "1"))
"""How many times the repeated scenarios run: 1 in `make test`, 20 in `make reliability`."""
