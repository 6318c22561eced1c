"""Default plugin `demo`: `banktasks demo` and `banktasks db seed`.

`banktasks demo` runs the main job end to end on the embedded default.

Fresh `var/`, seeded data, the embedded Valkey broker, a real worker process;
every enabled plugin's task goes through the queue with the arguments its
`@task(example=…)` declares; then what each did is printed and everything stops.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import redis

from core import create_app, hookimpl, load_settings
from core.default_plugins.seed import reset, seed


def _say(message: str) -> None:
    click.echo(message, err=False)


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    spinner = "|/-\\"
    i = 0
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            if sys.stdout.isatty():
                click.echo("\r" + " " * 60 + "\r", nl=False)
            return value
        if sys.stdout.isatty():
            click.echo(f"\r  {spinner[i % 4]} {what}", nl=False)
        i += 1
        time.sleep(0.1)
    raise click.ClickException(f"timed out after {timeout:.0f}s waiting for {what}")


def _compact(value: Any, width: int = 110) -> str:
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(v, dict) and "status" in v for v in value.values())
    ):  # e.g. health checks: name=status for each
        value = {k: v["status"] for k, v in value.items()}
    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 3] + "..."


def _queues_idle(client: redis.Redis, queues: list[str]) -> bool:
    busy = sum(int(client.llen(q)) for q in queues) + int(client.hlen("unacked"))
    return busy == 0


def run_demo(transactions: int, users: int, timeout: float) -> int:
    """Run the demo; return the process exit code (0 when every task succeeded)."""
    started = time.perf_counter()
    settings = load_settings(redis_url="", database_url="")
    var_dir = settings.var_dir.resolve()
    if os.environ.get("REDIS_URL") or os.environ.get("DATABASE_URL"):
        _say("note: the demo ignores REDIS_URL and DATABASE_URL and runs on the embedded default")
    _say(f"[1/5] fresh {var_dir}")
    old = create_app(settings)
    if old.broker is None:
        raise click.ClickException("the demo needs the embedded broker (the `broker` plugin)")
    old.broker.stop()  # type: ignore[attr-defined]
    shutil.rmtree(var_dir, ignore_errors=True)
    app = create_app(settings)
    _say(f"[2/5] seeding {users} users and {transactions:,} transactions with planted patterns")
    summary = seed(app.runtime.db, users=users, transactions=transactions, seed_value=42)
    _say(f"      planted: {_compact(summary.as_dict())}")

    _say("[3/5] starting the embedded Valkey broker and a worker (2 processes)")
    assert app.broker is not None
    app.broker.start()
    broker_url = app.broker.url
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(BANKTASKS_VAR_DIR=str(var_dir), LOG_LEVEL="WARNING")
    log_path = var_dir / "demo-worker.log"
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "core",
                "worker",
                "-c",
                "2",
                "-l",
                "WARNING",
                "-n",
                "demo@%h",
                "--without-mingle",
                "--without-gossip",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    failures = 0
    try:
        _wait(
            lambda: app.control.ping(timeout=0.3) or worker.poll() is not None,
            60,
            "the worker to come up",
        )
        if worker.poll() is not None:
            raise click.ClickException(f"the worker exited; see {log_path}")
        # plugin by plugin in registration order (fraud before reports, which reports alerts)
        order = app.runtime.plugins.enabled()
        names = sorted(app.runtime.tasks, key=lambda n: (order.index(n.split(".")[0]), n))
        _say(f"[4/5] sending {len(names)} tasks through the queue")
        results = {}
        for name in names:
            spec = app.runtime.tasks[name]
            kwargs = spec.example_kwargs()
            if spec.example is None and any(
                p.default is p.empty for p in spec.signature.parameters.values()
            ):
                _say(f"      - {name}: skipped (needs arguments and declares no example)")
                continue
            results[name] = app.tasks[name].apply_async(kwargs=kwargs)
        for name, result in results.items():
            _wait(result.ready, timeout, name)
            value = result.get(propagate=False)
            if result.successful():
                _say(f"      ok   {name}")
                for key, item in (value or {}).items():
                    _say(f"           {key}: {_compact(item, 100)}")
            else:
                failures += 1
                _say(f"      FAIL {name}: {type(value).__name__}: {value}")
        client = redis.Redis.from_url(broker_url)
        queues = [q.name for q in app.conf.task_queues]
        _wait(lambda: _queues_idle(client, queues), timeout, "follow-up tasks (hooks)")
        _say("[5/5] files written under var/:")
        for folder in sorted(p for p in var_dir.iterdir() if p.is_dir() and p.name != "valkey"):
            files = [f for f in folder.rglob("*") if f.is_file()]
            _say(f"      {folder.name}/: {len(files)} file(s)")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        app.broker.stop()  # type: ignore[attr-defined]
        app.runtime.db.dispose()
    elapsed = time.perf_counter() - started
    _say(
        f"done in {elapsed:.1f}s; worker and broker stopped; "
        f"{'all tasks succeeded' if not failures else f'{failures} task(s) failed'}"
    )
    return 1 if failures else 0


@click.command("demo")
@click.option("--transactions", default=3000, show_default=True, type=click.IntRange(100))
@click.option("--users", default=50, show_default=True, type=click.IntRange(2))
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait per task.")
def demo_command(transactions: int, users: int, timeout: float) -> None:
    """Run every plugin's task end to end on the embedded default (fresh var/)."""
    sys.exit(run_demo(transactions, users, timeout))


@click.command("seed")
@click.option("--users", default=100, show_default=True, type=click.IntRange(1))
@click.option("--transactions", default=5000, show_default=True, type=click.IntRange(0))
@click.option("--seed", "seed_value", default=42, show_default=True, type=int)
@click.option("--days", default=30, show_default=True, type=click.IntRange(2))
@click.option("--reset", "reset_first", is_flag=True, help="Drop and recreate all tables first.")
@click.option("--json", "as_json", is_flag=True, help="Print the full summary as JSON.")
def seed_command(
    users: int, transactions: int, seed_value: int, days: int, reset_first: bool, as_json: bool
) -> None:
    """Write deterministic customers, accounts and transactions with planted fraud patterns."""
    from core.celery import default_app

    runtime = default_app().runtime
    if runtime.data_db is not None:
        raise click.ClickException(
            "DATA_MAPPING is set: banktasks reads the bank's own tables and never writes "
            "them; seed an unmapped database instead (unset DATA_MAPPING)"
        )
    db = runtime.db
    if reset_first:
        reset(db)
    started = time.perf_counter()
    summary = seed(db, users=users, transactions=transactions, seed_value=seed_value, days=days)
    elapsed = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({**summary.as_dict(full=True), "seconds": round(elapsed, 3)}))
    else:
        data = summary.as_dict()
        click.echo(f"seeded in {elapsed:.2f}s: " + ", ".join(f"{k}={v}" for k, v in data.items()))


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks demo` and `banktasks db seed`."""
    cli.add_command(demo_command)
    db_group = cli.commands.get("db")
    if isinstance(db_group, click.Group):
        db_group.add_command(seed_command)
