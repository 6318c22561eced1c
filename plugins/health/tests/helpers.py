"""Helpers shared by the health plugin's tests: stand-in checks and test data."""

from __future__ import annotations

from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from banktasks_testing import fake_plugin, make_account, make_transaction

TASK = "health.system_health_check"
SCHEDULE_ENTRY = "system-health-check"
BUILTIN = {"broker", "database", "queue_backlog", "pending_transactions"}
DEFAULT_PLUGIN_CHECKS = {"dead_letters", "missed_schedules"}
"""What the default plugins `deadletters` and `schedules` add to every app with health."""
EVERY_APP = BUILTIN | DEFAULT_PLUGIN_CHECKS
"""The checks of an app with health alone (and the default plugins)."""
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def checks_plugin(*checks: Any, name: str = "acme_checks") -> tuple[str, ModuleType]:
    """`(name, module)`: a third-party plugin whose `register_health_checks()` returns `checks`."""
    return name, fake_plugin(name, register_health_checks=lambda: list(checks))


class Fixed:
    """A check that returns a fixed result, as a plain dict (no import of health needed)."""

    def __init__(self, name: str, status: str, value: Any = None) -> None:
        self.name = name
        self.status = status
        self.value = value

    def run(self, ctx: Any) -> dict[str, Any]:
        """The fixed result."""
        detail = f"{self.name} is {self.status}"
        return {"status": self.status, "detail": detail, "value": self.value, "threshold": 1}


class Returns:
    """A check that returns whatever it was given."""

    def __init__(self, name: str, returned: Any) -> None:
        self.name = name
        self.returned = returned

    def run(self, ctx: Any) -> Any:
        """The given object, as is."""
        return self.returned


class Raises:
    """A check that raises."""

    name = "explodes"

    def run(self, ctx: Any) -> Any:
        """Raise a RuntimeError."""
        raise RuntimeError("disk controller on fire")


def add_pending(app: Any, at: datetime, status: str = "pending") -> int:
    """A transaction of `status` created `at`, on a new account; returns its id."""
    with app.runtime.db.session() as session:
        tx = make_transaction(session, make_account(session), amount="5.00", status=status, at=at)
        return tx.id
