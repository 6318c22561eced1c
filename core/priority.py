"""Task priorities on the Redis broker: 0 runs first, 9 last (Celery's Redis semantics).

Each queue is ten Redis lists, one per priority (`<queue>` for 0, `<queue>\\x06\\x16<n>` for
n = 1…9, kombu's names); a worker asks for the highest priority first across all the
queues it consumes, so with one message prefetched per process (banktasks' setting) the
next task a process takes is the most urgent one waiting. A message without a priority
has 0: a task that may wait (a mass mailing) is sent with a higher number, or declares
one with `@task(priority=...)`.
"""

from __future__ import annotations

from typing import Any

from core.errors import TaskArgumentError

SEP = "\x06\x16"
"""kombu's separator between a queue's name and its priority (`<queue>\\x06\\x16<n>`)."""

HIGHEST = 0
LOWEST = 9
STEPS = list(range(HIGHEST, LOWEST + 1))
"""kombu's `priority_steps`: one Redis list per priority."""


def check_priority(task_name: str, value: Any) -> int | None:
    """`value` if it is a priority (None: the task's default); else TaskArgumentError."""
    if value is None:
        return None
    if type(value) is not int or not HIGHEST <= value <= LOWEST:
        raise TaskArgumentError(
            f"{task_name}: priority={value!r:.40} is not a whole number from {HIGHEST} "
            f"(runs first) to {LOWEST} (runs last)"
        )
    return value


def queue_lists(app: Any) -> dict[str, list[str]]:
    """Each queue of the app → the Redis lists that hold its messages, highest priority
    first: `<queue>`, then `<queue>\\x06\\x16<n>` for each priority step n > 0 (kombu's
    names, with the app's `priority_steps`, `sep` and `global_keyprefix`)."""
    options = dict(app.conf.broker_transport_options or {})
    steps = sorted(set(options.get("priority_steps") or STEPS))
    sep = options.get("sep") or SEP
    prefix = options.get("global_keyprefix") or ""
    names = {q.name for q in app.conf.task_queues or ()} | {app.conf.task_default_queue}
    return {
        name: [f"{prefix}{name}" + (f"{sep}{step}" if step else "") for step in steps]
        for name in sorted(names)
    }
