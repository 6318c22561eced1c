"""The systemd units under deploy/systemd: valid for systemd, hardened, and their stop
semantics hold with the real processes they start.

`systemd-analyze verify` checks each unit (and an instance of the worker template) with
its ExecStart pointed at this venv: the units name /opt/banktasks/venv, which the test
machine does not have. No systemd runs here, so the stop tests start each unit's
ExecStart command line (parsed from the unit file, specifiers and $VARIABLES expanded as
systemd does) and send SIGTERM the way the unit's KillMode says systemd would.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from banktasks_testing import free_port, http_status, wait_for
from tests.conftest import install_dist

pytestmark = pytest.mark.e2e

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SERVICES = sorted(p.name for p in UNITS.glob("*.service"))
INSTALL_PREFIX = "/opt/banktasks/venv"
VAR_DIR = "/var/lib/banktasks"
SLOW_PLUGIN = '''"""A plugin with one slow task, for the stop tests of the systemd units."""

import time
from pathlib import Path

from core import hookimpl, task


@task
def nap(seconds: float, marker: str) -> str:
    """Write `<marker>.started`, sleep, write `<marker>.done`."""
    Path(marker + ".started").write_text("")
    time.sleep(seconds)
    Path(marker + ".done").write_text("")
    return "rested"


@hookimpl
def register_tasks():
    return [nap]
'''


def need(tool: str) -> str:
    """The path of `tool`; without it a skip with the reason, or a failure under CI=true."""
    found = shutil.which(tool)
    if found:
        return found
    reason = f"{tool} is not installed (Debian package `systemd`): the units are not verified"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must install it (.ci/run)")
    pytest.skip(reason)


def unit_entries(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment in a unit file, in order; a line ending
    in a backslash goes on on the next line, as systemd reads it."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    pending = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_value(name: str, key: str, section: str = "Service") -> str:
    """The last value of `key` (systemd's rule for single-valued settings)."""
    values = [v for s, k, v in unit_entries(name) if s == section and k == key]
    assert values, f"{name}: no {key}= in [{section}]"
    return values[-1]


def unit_values(name: str, key: str, section: str = "Service") -> list[str]:
    """Every value of a list-valued `key`, in order."""
    return [v for s, k, v in unit_entries(name) if s == section and k == key]


def seconds(value: str) -> float:
    """A systemd time span such as `3660`, `90s`, `5min`, `1h 30s` in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def exec_start(name: str, instance: str = "", env: dict[str, str] | None = None) -> list[str]:
    """The unit's ExecStart as the argv systemd runs: specifiers (%i, %I, %H, %%) and
    $VAR / ${VAR} expanded from `env`, the install prefix mapped onto this venv."""
    line = unit_value(name, "ExecStart")
    assert line[0] not in "-@+!:", f"{name}: ExecStart prefixes are not handled here"
    specifiers = {"i": instance, "I": instance, "H": socket.gethostname(), "%": "%"}

    def specifier(match: re.Match[str]) -> str:
        if match.group(1) not in specifiers:
            raise AssertionError(f"{name}: specifier %{match.group(1)} not handled by the test")
        return specifiers[match.group(1)]

    env = env or {}
    argv: list[str] = []
    for word in shlex.split(re.sub(r"%(.)", specifier, line)):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:  # a bare $VAR word: split on whitespace, nothing when unset or empty
            argv += env.get(whole.group(1), "").split()
        else:
            argv.append(
                re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m[1], ""), word)
            )
    assert argv[0].startswith(INSTALL_PREFIX + "/"), argv[0]
    argv[0] = sys.prefix + argv[0][len(INSTALL_PREFIX) :]
    return argv


def copy_for_this_machine(folder: Path) -> Path:
    """The units with their ExecStart pointed at this venv (the only change)."""
    folder.mkdir()
    for unit in UNITS.iterdir():
        (folder / unit.name).write_text(unit.read_text().replace(INSTALL_PREFIX, sys.prefix))
    return folder


def verify(*paths: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on the paths; unknown keys and bad values are only
    warnings for systemd (exit 0), so the output must be empty too."""
    return subprocess.run(
        [need("systemd-analyze"), "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_unit_passes_systemd_analyze_verify(tmp_path):
    copy = copy_for_this_machine(tmp_path / "units")
    units = sorted(copy.iterdir())
    assert {u.name for u in units} >= {
        "banktasks-worker.service",
        "banktasks-worker@.service",
        "banktasks-beat.service",
        "banktasks-flower.service",
        "banktasks-metrics.service",
        "banktasks.target",
    }
    # each unit (the template on its own too), and an instance of the template, which
    # systemd finds beside it
    for unit in units:
        result = verify(unit)
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and not output, (unit.name, output)
    result = verify(copy / "banktasks-worker@fraud.service")
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stderr


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a missing binary, an unknown key, a bad value."""
    copy = copy_for_this_machine(tmp_path / "units")
    worker = copy / "banktasks-worker.service"
    text = worker.read_text()
    for broken in (
        text.replace(sys.prefix, "/nonexistent"),
        text.replace("KillMode=mixed", "KilMode=mixed"),
        text.replace("KillMode=mixed", "KillMode=mixd"),
    ):
        worker.write_text(broken)
        result = verify(worker)
        assert result.returncode != 0 or (result.stdout + result.stderr).strip()


@pytest.mark.parametrize("unit", SERVICES)
def test_services_are_hardened(unit, tmp_path):
    """Dedicated user, root-only settings file, writable var dir only, restart on failure,
    and systemd's own exposure score of at most 2.5 (of 10)."""
    assert unit_value(unit, "User") == "banktasks"
    assert unit_values(unit, "EnvironmentFile")[0] == "/etc/banktasks/banktasks.env"
    assert f"BANKTASKS_VAR_DIR={VAR_DIR}" in unit_values(unit, "Environment")
    assert unit_value(unit, "WorkingDirectory") == VAR_DIR
    assert unit_value(unit, "Restart") == "on-failure"
    assert unit_value(unit, "KillSignal") == "SIGTERM"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit_value(unit, key) == value, key
    assert VAR_DIR in unit_value(unit, "ReadWritePaths").split()
    copy = copy_for_this_machine(tmp_path / "units")
    target = copy / (unit.replace("@.", "@fraud.") if "@." in unit else unit)
    result = subprocess.run(
        [need("systemd-analyze"), "security", "--offline=yes", "--threshold=25", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_worker_stop_timeout_outlasts_the_longest_task(make_app):
    """TimeoutStopSec of the workers exceeds the broker's visibility timeout with every
    installed plugin (a task cannot usefully run longer: it is delivered again after it)
    and every task's hard time limit."""
    app = make_app()
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    limits = [int(spec.options.get("time_limit") or 0) for spec in app.runtime.tasks.values()]
    for unit in ("banktasks-worker.service", "banktasks-worker@.service"):
        stop = seconds(unit_value(unit, "TimeoutStopSec"))
        assert stop > visibility, (unit, stop, visibility)
        assert stop > max(limits), (unit, stop, limits)


@pytest.mark.parametrize("unit", SERVICES)
def test_a_configuration_error_is_not_restarted(bt_env, unit):
    """The unit's ExecStart with a setting production refuses exits with a status that
    RestartPreventExitStatus lists: Restart=on-failure does not loop on it."""
    env = {**os.environ, **bt_env, "BANKTASKS_ENV": "production"}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        exec_start(unit, "fraud"), env=env, capture_output=True, text=True, timeout=60
    )
    assert "configuration error: REDIS_URL is required" in done.stderr, done.stderr
    assert str(done.returncode) in unit_value(unit, "RestartPreventExitStatus").split()


def stop_as_systemd(unit: str, proc: subprocess.Popen[bytes]) -> None:
    """Send the unit's KillSignal where its KillMode says systemd sends it."""
    sig = signal.Signals[unit_value(unit, "KillSignal")]
    mode = unit_values(unit, "KillMode")[-1] if unit_values(unit, "KillMode") else "control-group"
    if mode == "mixed" or mode == "process":
        proc.send_signal(sig)  # the main process only
    else:
        os.killpg(proc.pid, sig)  # control-group: every process of the service


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Run `argv` in a session of its own (its process group: the service's cgroup)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Whatever is left of a process group this test started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture
def slowpoke(e2e, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The e2e harness with only the `slowpoke` plugin (one slow task), installed as a
    distribution that the workers find through its entry point; yields the app."""
    (tmp_path / "slowpoke.py").write_text(SLOW_PLUGIN)
    site = install_dist(
        tmp_path / "site",
        "slowpoke",
        "slowpoke",
        tmp_path / "slowpoke.py",
        {"slowpoke": "slowpoke"},
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    e2e.set(PYTHONPATH=f"{site}:{e2e.env['PYTHONPATH']}", BANKTASKS_PLUGINS="slowpoke")
    app = e2e.app()
    yield app
    app.runtime.db.dispose()
    sys.modules.pop("slowpoke", None)


@pytest.mark.parametrize(
    ("unit", "instance", "unit_env"),
    [
        ("banktasks-worker.service", "", {}),
        ("banktasks-worker@.service", "slowpoke", {"WORKER_ARGS": "--concurrency=1"}),
    ],
)
def test_sigterm_lets_the_running_task_finish(e2e, slowpoke, tmp_path, unit, instance, unit_env):
    """SIGTERM where the unit's KillMode sends it, while a 5 s task runs: the task ends
    and stores its result, then the worker exits 0 within TimeoutStopSec."""
    app = slowpoke
    argv = exec_start(unit, instance, unit_env)
    assert argv[1] == "worker", argv
    log = tmp_path / "worker.log"
    proc = start(argv, {**os.environ, **e2e.env, **unit_env}, log)
    try:
        wait_for(lambda: " ready." in log.read_text() or proc.poll() is not None, 60, "ready")
        assert proc.poll() is None, log.read_text()
        if instance:
            assert f"{instance}@{socket.gethostname()}" in log.read_text()
            assert "concurrency: 1 (prefork)" in log.read_text()
        marker = str(tmp_path / "nap")
        result = app.tasks["slowpoke.nap"].delay(seconds=5, marker=marker)
        wait_for(lambda: Path(marker + ".started").exists(), 30, "the task to start")

        stopped_at = time.monotonic()
        stop_as_systemd(unit, proc)
        code = proc.wait(seconds(unit_value(unit, "TimeoutStopSec")))
        took = time.monotonic() - stopped_at

        assert Path(marker + ".done").exists(), log.read_text()
        assert result.get(timeout=10) == "rested"
        assert code == 0, log.read_text()
        assert took >= 3, f"exited after {took:.1f}s, before the task could finish"
    finally:
        kill_group(proc)


@pytest.mark.parametrize(
    "unit", ["banktasks-beat.service", "banktasks-flower.service", "banktasks-metrics.service"]
)
def test_beat_flower_and_metrics_stop_promptly_on_sigterm(e2e, tmp_path, unit):
    """They run no task: SIGTERM ends them well within TimeoutStopSec, with exit 0 (no
    restart), and beat gives up its lock so another beat can take over at once."""
    port = free_port()
    e2e.set(BANKTASKS_PLUGINS="health", FLOWER_PORT=str(port), METRICS_PORT=str(port))
    app = e2e.app()
    broker = redis.Redis.from_url(app.conf.broker_url)
    lock = app.conf.redbeat_key_prefix + ":lock"  # RedBeat's key for its lock
    log = tmp_path / "service.log"
    proc = start(exec_start(unit), {**os.environ, **e2e.env}, log)
    try:
        if "beat" in unit:
            wait_for(lambda: broker.exists(lock), 60, "beat's lock")
        elif "flower" in unit:
            wait_for(
                lambda: http_status(f"http://127.0.0.1:{port}/healthcheck") == 200, 60, "flower"
            )
        else:  # the metrics endpoint asks for its login
            wait_for(lambda: http_status(f"http://127.0.0.1:{port}/metrics") == 401, 60, "it")
        assert proc.poll() is None, log.read_text()
        stopped_at = time.monotonic()
        stop_as_systemd(unit, proc)
        code = proc.wait(seconds(unit_value(unit, "TimeoutStopSec")))
        assert time.monotonic() - stopped_at < 15, log.read_text()
        assert code == 0, log.read_text()
        if "beat" in unit:
            assert not broker.exists(lock), "beat kept its lock"
    finally:
        kill_group(proc)
