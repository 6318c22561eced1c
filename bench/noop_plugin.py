"""A banktasks plugin with one no-op task, `bench.noop(i: int)` on queue `bench`.

The task goes through everything a plugin task gets: argument validation from the
type hints (caller and worker), the BanktasksTask base (log context), the runner
that makes the result JSON-safe, acks_late + reject_on_worker_lost.
"""

from __future__ import annotations

from typing import Any

from core import hookimpl, task

banktasks_name = "bench"


@task(queue="bench")
def noop(i: int) -> None:
    """Do nothing (the framework's overhead is what is measured)."""
    return None


@hookimpl
def register_tasks() -> list[Any]:
    return [noop]
