"""A banktasks plugin with one no-op task, `bench.noop(i: int)` on queue `bench`.

The task goes through everything a plugin task gets: argument validation from the
type hints (caller and worker), the BanktasksTask base (log context), the runner
that makes the result JSON-safe, acks_late + reject_on_worker_lost.
"""

from __future__ import annotations

import gc
import os
from typing import Any

from core import hookimpl, task

banktasks_name = "bench"


@task(queue="bench")
def noop(i: int) -> None:
    """Do nothing (the framework's overhead is what is measured)."""
    return None


@task(queue="bench")
def collect() -> int:
    """Run a full garbage collection in this pool process and return its pid.

    Any long enough task makes the collector walk every object of its process; the
    start-up bench uses this to see what that does to the memory a child shares.
    """
    gc.collect()
    return os.getpid()


@hookimpl
def register_tasks() -> list[Any]:
    return [noop, collect]
