"""Fixtures of the fraud plugin's tests: an app with only fraud, and a tiny bank to fill."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .helpers import Bank, analyse


@pytest.fixture
def fraud_app(make_app: Callable[..., Any]) -> Any:
    """An app with only the fraud plugin (set FRAUD_* variables before asking for it)."""
    return make_app("fraud")


@pytest.fixture
def bank(fraud_app: Any) -> Bank:
    """A Bank on the fraud app's database."""
    return Bank(fraud_app.runtime.db)


@pytest.fixture
def run() -> Callable[..., dict[str, Any]]:
    """`run()` analyses the default test window; `run(since=…, until=…)` another one."""
    return analyse


@pytest.fixture
def bank_with(make_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Bank]:
    """`bank_with(FRAUD_VELOCITY_LIMIT="3")`: a fraud app built with those variables set."""

    def build(**variables: str) -> Bank:
        for key, value in variables.items():
            monkeypatch.setenv(key, value)
        return Bank(make_app("fraud").runtime.db)

    return build
