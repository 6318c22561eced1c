"""What several test modules share: the planted list, a fixed moment, running a task."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
"""A fixed moment the tests plant their transactions around."""

LISTED = [
    {"name": "ACME Holdings Ltd.", "program": "SDGT"},
    {"name": "Blue Harbor Shipping", "program": "IRAN"},
]
"""The default sanctions list of `write_list()`."""


def run(app: Any, task_name: str, **kwargs: Any) -> Any:
    """Run a task in this process, as a worker would (`Task.apply`), and return its result."""
    return app.tasks[task_name].apply(kwargs=kwargs).get()
