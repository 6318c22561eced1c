"""Fixtures for core tests: a third-party test plugin installed as a real distribution."""

from __future__ import annotations

import importlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def install_dist(
    site: Path, module: str, dist: str, source: Path, entry_points: dict[str, str]
) -> Path:
    """Lay out `module.py` plus a `<dist>-1.0.dist-info` with entry points under `site`."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, site / f"{module}.py")
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[banktasks]\n{lines}\n")
    (info / "RECORD").write_text("")
    return site


@pytest.fixture
def acme_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The `acme_rules` plugin installed as distribution `acme-rules` (entry point group
    `banktasks`), importable here and in subprocesses through PYTHONPATH."""
    site = install_dist(
        tmp_path / "site",
        "acme_rules",
        "acme-rules",
        HERE / "acme_plugin_src.py",
        {"acme_rules": "acme_rules"},
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    old = sys.modules.pop("acme_rules", None)
    yield site
    sys.modules.pop("acme_rules", None)
    if old is not None:
        sys.modules["acme_rules"] = old


@dataclass
class Beat:
    """A real `celery -A core beat` kept running the way its systemd unit does
    (deploy/systemd/banktasks-beat.service: `Restart=on-failure`): when it exits with a
    failure (RedBeat's beat exits when the broker goes away), it is started again."""

    env: dict[str, str]
    folder: Path
    proc: Any = None
    restarts: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Beat:
        from tests.reliability.helpers import start_beat

        self.proc = start_beat(self.env, self.folder)
        threading.Thread(target=self._supervise, daemon=True).start()
        return self

    def _supervise(self) -> None:
        from tests.reliability.helpers import start_beat

        while not self.stopping.wait(0.5):
            code = self.proc.poll()
            if code is not None and code != 0 and not self.stopping.is_set():
                time.sleep(1)  # RestartSec
                self.restarts += 1
                self.proc = start_beat(self.env, self.folder)

    def running(self) -> bool:
        """True while the current beat process lives."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop supervising, then stop the process group (SIGTERM, then SIGKILL)."""
        from banktasks_testing.processes import stop_group

        self.stopping.set()
        if self.proc is not None:
            stop_group(self.proc)


@pytest.fixture
def beat(e2e: Any) -> Iterator[Any]:
    """`beat()` starts a supervised real beat (a `Beat`) with the e2e environment (its log:
    `<tmp>/beat.log`); it is stopped at teardown, whatever the test did."""
    started: list[Beat] = []

    def start() -> Beat:
        started.append(Beat(e2e.env, e2e.tmp).start())
        return started[-1]

    yield start
    for one in started:
        one.stop()
