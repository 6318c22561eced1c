"""Shared helpers: repetition statistics, result rows, processes, machine facts."""

# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import contextlib
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DATA = BENCH / ".data"


def log(message: str) -> None:
    """Progress line on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- statistics


@dataclass
class Sample:
    """The repetitions of one figure."""

    values: list[float]
    unit: str
    higher_is_better: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "values": list(self.values),
            "reps": len(self.values),
        }


def ratio(a: Sample, b: Sample) -> dict[str, float]:
    """median(a)/median(b), with the range of the per-repetition ratios (same-run pairs)."""
    pairs = [x / y for x, y in zip(a.values, b.values, strict=False) if y]
    value = a.median / b.median if b.median else float("inf")
    return {
        "ratio": value,
        "min": min(pairs) if pairs else value,
        "max": max(pairs) if pairs else value,
    }


def fmt_num(value: float, digits: int = 3) -> str:
    """A number with about `digits` significant digits, no exponent for usual ranges."""
    if value != value:  # NaN
        return "nan"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    return f"{value:.{decimals}f}"


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{fmt_num(seconds * 1e6)} µs"
    if seconds < 1:
        return f"{fmt_num(seconds * 1e3)} ms"
    return f"{fmt_num(seconds)} s"


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds < 1e-3:
        return 1e6, "µs"
    if seconds < 1:
        return 1e3, "ms"
    return 1.0, "s"


def fmt_sample(sample: Sample, unit: str | None = None) -> str:
    """`median [min–max] unit`; seconds are shown in µs/ms/s chosen from the median."""
    if sample.unit == "s":
        factor, shown = _time_unit(sample.median)
    else:
        factor, shown = 1.0, sample.unit
    shown = unit if unit is not None else shown
    m, lo, hi = (fmt_num(v * factor) for v in (sample.median, sample.min, sample.max))
    return f"{m} [{lo}–{hi}] {shown}".rstrip()


def fmt_ratio(r: dict[str, float], suffix: str = "×") -> str:
    return f"{fmt_num(r['ratio'])}{suffix} [{fmt_num(r['min'])}–{fmt_num(r['max'])}]"


# --------------------------------------------------------------------------- result rows


@dataclass
class Row:
    """One line of the table. `cells` by column key ("value"/"sqlite", "postgresql")."""

    key: str
    figure: str
    cells: dict[str, str] = field(default_factory=dict)
    target: str = ""
    met: dict[str, bool | None] = field(default_factory=dict)
    section: str = ""


class Results:
    """Everything one run measured: samples, comparisons, table rows, notes."""

    def __init__(self) -> None:
        self.samples: dict[str, dict[str, Any]] = {}
        self.comparisons: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, Row] = {}
        self.order: list[str] = []
        self.notes: list[str] = []
        self.errors: dict[str, str] = {}

    def sample(self, name: str, sample: Sample, **extra: Any) -> Sample:
        self.samples[name] = {**sample.as_dict(), **extra}
        return sample

    def compare(
        self, name: str, r: dict[str, float], target: str, met: bool | None, **extra: Any
    ) -> None:
        self.comparisons[name] = {**r, "target": target, "met": met, **extra}

    def row(
        self,
        key: str,
        figure: str,
        column: str,
        text: str,
        target: str = "",
        met: bool | None = None,
        section: str = "",
    ) -> None:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Row(key, figure, section=section)
            self.order.append(key)
        row.cells[column] = text
        if target:
            row.target = target
        if met is not None or column not in row.met:
            row.met[column] = met

    def note(self, text: str) -> None:
        log(f"note: {text}")
        self.notes.append(text)


# --------------------------------------------------------------------------- processes


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: no banktasks settings leak in from outside."""
    prefixes = (
        "BANKTASKS_",
        "REDIS_URL",
        "DATABASE_URL",
        "LOG_",
        "EMAIL_",
        "SMTP_",
        "FRAUD_",
        "REPORTS_",
        "EXPORT_",
        "HEALTH_",
        "NOTIFICATIONS_",
        "BENCH_",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    pythonpath = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    env["PYTHONPATH"] = pythonpath
    env.update(extra)
    return env


class Proc:
    """A child process in its own session, stopped (and only it) at the end."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=str(ROOT),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        from banktasks_testing.processes import stop_group

        stop_group(self.proc, timeout)
        self._log.close()


def run_timed(
    cmd: list[str], stdout_path: Path | None = None, env: dict[str, str] | None = None
) -> tuple[float, int, str]:
    """Run `cmd` (stdout to a file if given); return (seconds, peak RSS kB, stderr tail).

    Uses os.wait4 so the RSS is this child's own, not the maximum over all children.
    """
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        assert proc.stderr is not None
        err = proc.stderr.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdout_path:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise RuntimeError(
            f"{cmd[0]} exited {proc.returncode}: {err.decode(errors='replace')[-500:]}"
        )
    return elapsed, usage.ru_maxrss, err.decode(errors="replace")[-300:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_gb() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def machine() -> dict[str, Any]:
    """Facts about the machine and software versions of this run."""
    import sqlite3

    import celery
    import kombu
    import pydantic
    import sqlalchemy

    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": _mem_gb(),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "pydantic": pydantic.VERSION,
        "sqlite": sqlite3.sqlite_version,
        "loadavg_start": list(os.getloadavg()),
    }
