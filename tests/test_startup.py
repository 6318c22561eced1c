"""core.startup: the collector is paused around imports and frozen once before a fork."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from core.startup import frozen_imports


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the collector as the test found it (frozen objects are unfrozen after)."""
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


class Node:
    """An object the collector tracks."""


def _tracked(obj: object) -> bool:
    # frozen objects are left out of gc.get_objects()
    return any(o is obj for o in gc.get_objects())


def test_frozen_imports_pauses_the_collector_and_freezes_what_the_block_made(
    collector: None,
) -> None:
    gc.enable()
    with frozen_imports():
        assert not gc.isenabled()
        made = Node()
    assert gc.isenabled()
    assert not _tracked(made), "what the block made is frozen"
    later = Node()
    assert _tracked(later), "what is made afterwards is collected as usual"


def test_nested_blocks_switch_the_collector_back_on_only_at_the_outermost(
    collector: None,
) -> None:
    gc.enable()
    with frozen_imports():
        with frozen_imports():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off_and_nothing_is_frozen(
    collector: None,
) -> None:
    gc.unfreeze()
    gc.disable()
    with frozen_imports():
        made = Node()
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert _tracked(made)


def test_importing_core_leaves_the_collector_on_with_the_imports_frozen() -> None:
    code = "import gc, core; print(gc.isenabled(), gc.get_freeze_count() > 10000)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["True", "True"]


def test_a_worker_freezes_once_before_its_first_pool_process(
    make_app: Any, collector: None
) -> None:
    app = make_app()
    assert _tracked(app), "an app is not frozen when it is built"
    signals.worker_before_create_process.send(sender=None)
    assert not _tracked(app), "the first fork freezes what the parent holds"
    later = Node()
    signals.worker_before_create_process.send(sender=None)
    assert _tracked(later), "later children do not freeze again"


@pytest.mark.e2e
def test_pool_processes_of_a_real_worker_share_the_frozen_app(e2e: Any) -> None:
    from banktasks_testing import WorkerProcess

    app = e2e.app()
    worker = WorkerProcess(
        {**os.environ, **e2e.env, "STARTUP_PROBE_WORKER": "1"},
        e2e.tmp / "startup-worker.log",
        concurrency=2,
    )
    worker.cmd[worker.cmd.index("core")] = "tests.test_startup:probe_app"
    e2e.workers.append(worker)  # stopped at teardown
    worker.start()
    results = [app.send_task("startup.app_is_frozen").get(timeout=60) for _ in range(4)]
    assert results == [True] * 4


def _probe_app() -> Any:
    from banktasks_testing import fake_plugin
    from core import create_app, current_app, load_settings, task

    def app_is_frozen() -> bool:
        """True when this pool process got its app frozen from the parent."""
        return not _tracked(current_app())

    plugin = fake_plugin("startup", register_tasks=lambda: [task(app_is_frozen)])
    return create_app(load_settings(), plugins=[plugin])


probe_app = _probe_app() if os.environ.get("STARTUP_PROBE_WORKER") else None
