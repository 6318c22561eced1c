"""Fixtures for core tests: a third-party test plugin installed as a real distribution."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

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
