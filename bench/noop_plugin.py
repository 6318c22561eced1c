"""A banktasks plugin with one no-op task, `bench.noop(i: int)` on queue `bench`.

The task goes through everything a plugin task gets: argument validation from the
type hints (caller and worker), the BanktasksTask base (log context), the runner
that makes the result JSON-safe, acks_late + reject_on_worker_lost.
"""

from __future__ import annotations

import os
from typing import Any

from core import hookimpl, task

LEAN = {
    "worker_send_task_events": False,
    "task_send_sent_event": False,
    "task_track_started": False,
}
"""What BENCH_LEAN=1 switches off, to show what banktasks costs without these settings."""

banktasks_name = "bench"


@task(queue="bench")
def noop(i: int) -> None:
    """Do nothing (the framework's overhead is what is measured)."""
    return None


@hookimpl
def register_tasks() -> list[Any]:
    return [noop]


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """With BENCH_LEAN=1: task events, sent events and STARTED states off (see LEAN)."""
    if os.environ.get("BENCH_LEAN") == "1":
        lean(app)


def lean(app: Any) -> None:
    """Apply LEAN to the app and to its already bound tasks (they copied the conf when bound)."""
    app.conf.update(LEAN)
    for celery_task in app.tasks.values():
        celery_task.track_started = False
