"""Shared fixtures of the security suite: a seeded app with the five built-in plugins and a
snapshot of everything a task could write (files under the var dir, rows, queued messages)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from core import TaskArgumentError
from core.db import Base
from core.default_plugins.seed import seed
from core.models import User

BUILTIN = ["reports", "fraud", "notifications", "export", "health"]
USERS = 5
"""The seed writes users 1..USERS (userN@example.com); a higher id is an unknown user."""

MAX_ERROR_CHARS = 4096
"""A refusal is a clear error: one message, not an echo of a megabyte of input."""


def all_files(root: Path) -> tuple[str, ...]:
    """Every file under `root` (temp dot-files included), except the broker's, the DB's
    and the metrics plugin's counters (a refused task is counted: that is its job)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("valkey", "metrics")]
        for name in filenames:
            if name.startswith("banking.db") or name.startswith("celerybeat"):
                continue
            found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return tuple(sorted(found))


def row_counts(app: Any) -> dict[str, int]:
    """Rows in every table of the shared metadata (core and plugins)."""
    with app.runtime.db.session() as session:
        return {
            table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }


def queued_messages(app: Any) -> int:
    """Messages waiting in every list (queue) on the broker."""
    client = app.redis_client()
    return sum(int(client.llen(key)) for key in client.scan_iter() if client.type(key) == b"list")


def purge_queues(app: Any) -> None:
    client = app.redis_client()
    for key in list(client.scan_iter()):
        if client.type(key) == b"list":
            client.delete(key)


@dataclass
class Outcome:
    refused_in_process: bool
    refused_by_caller: bool
    error: str = ""


@dataclass
class SecApp:
    """The app under test, with the contract every task argument is held to."""

    app: Any
    var_dir: Path

    def state(self) -> tuple[tuple[str, ...], dict[str, int]]:
        return all_files(self.var_dir), row_counts(self.app)

    def check(self, task_name: str, kwargs: dict[str, Any]) -> Outcome:
        """Call the task in-process (validated like the worker) and through `.delay()`.

        Either a JSON-safe result or a TaskArgumentError: never another exception; a
        refusal writes no file and no row; the caller refuses nothing the worker would
        accept, and what it refuses never reaches the broker.
        """
        task = self.app.tasks[task_name]
        before = self.state()
        error = ""
        try:
            result = task.spec(**kwargs)
        except TaskArgumentError as exc:
            error = str(exc)
            assert error.strip(), "a refusal says what was wrong"
            assert len(error) <= MAX_ERROR_CHARS, f"refusal of {len(error)} characters"
            after = self.state()
            assert after[0] == before[0], f"a refused call left files: {after[0]} vs {before[0]}"
            assert after[1] == before[1], f"a refused call wrote rows: {after[1]} vs {before[1]}"
            refused = True
        else:
            json.dumps(result, default=str)
            leftovers = [f for f in all_files(self.var_dir) if Path(f).name.startswith(".")]
            assert not leftovers, f"temp files left behind: {leftovers}"
            refused = False

        waiting = queued_messages(self.app)
        try:
            task.delay(**kwargs)
        except TaskArgumentError as exc:
            assert len(str(exc)) <= MAX_ERROR_CHARS
            assert queued_messages(self.app) == waiting, "a refused .delay() reached the broker"
            by_caller = True
        else:
            assert queued_messages(self.app) == waiting + 1
            purge_queues(self.app)
            by_caller = False
        assert refused or not by_caller, (
            f"the caller refuses {kwargs!r:.200} but the task accepts it"
        )
        return Outcome(refused, by_caller, error)


def activate_all(app: Any) -> None:
    with app.runtime.db.session() as session:
        session.execute(update(User).values(is_active=True))


@pytest.fixture
def sec_app(make_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[SecApp]:
    """The five built-in plugins on a seeded SQLite database and the session's Valkey."""
    monkeypatch.setenv("EXPORT_SUBMIT_LIMIT_PER_MINUTE", "0")  # rate limits have their tests
    app = make_app(plugins=list(BUILTIN))
    seed(app.runtime.db, users=USERS, transactions=300, days=30)
    activate_all(app)
    yield SecApp(app, app.runtime.settings.var_dir)


def take_queued(app: Any) -> list[tuple[str, dict[str, Any]]]:
    """Pop every task message waiting on the broker: (task name, kwargs), oldest first."""
    import base64

    client = app.redis_client()
    taken = []
    for key in list(client.scan_iter()):
        if client.type(key) != b"list" or key.startswith(b"_"):
            continue
        while (raw := client.rpop(key)) is not None:  # kombu LPUSHes, workers BRPOP
            envelope = json.loads(raw)
            _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            taken.append((envelope["headers"]["task"], kwargs))
    return taken


def run_queued(app: Any) -> list[Any]:
    """Run what is queued in this process (as a worker would), until nothing is left."""
    results = []
    while queued := take_queued(app):
        for name, kwargs in queued:
            results.append(app.tasks[name].apply(kwargs=kwargs).get())
    return results
