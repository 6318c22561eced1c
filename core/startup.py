"""A process's start-up: the cyclic garbage collector around imports and before forks.

Importing the stack (SQLAlchemy, pydantic, Celery) makes some 100,000 objects that
live as long as the process and almost no garbage, yet the collector walks them
several times meanwhile (about 50 ms at `import core`). Celery's prefork pool then
runs a full `gc.collect()` before forking each child: about 100 ms per child over the
same objects. Frozen objects (`gc.freeze`) are skipped by both, and by the children's
collections, whose writes to the objects' GC headers would otherwise copy the pages
the children share with their parent (copy-on-write).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_imports() -> Iterator[None]:
    """Import modules with the cyclic collector paused, then freeze what they made.

    For module-level imports only: what they make lives as long as the process, so
    freezing it loses nothing. Reference counting still frees everything that is not
    in a cycle. Only the outermost of nested blocks freezes and switches the collector
    back on (if it was on before).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()


def freeze_before_fork() -> None:
    """Freeze every object alive now, before a worker forks its pool (see the module doc).

    Called once per worker, before its first child: what the long-running parent makes
    later is collected as usual.
    """
    gc.freeze()
