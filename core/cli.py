"""The `banktasks` command line (click). Plugins add commands with `register_commands`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from core.errors import BanktasksError, ConfigError
from core.logging import configure_logging


def _app() -> Any:
    from core.app import get_app

    return get_app()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """banktasks: background work for a banking backend (Celery + pluggy plugins)."""


def _celery(command: str, args: tuple[str, ...], defaults: list[str]) -> None:
    app = _app()
    app.ensure_broker()
    given = {a.split("=", 1)[0] for a in args if a.startswith("-")}
    extra = [d for d in defaults if d.split("=", 1)[0] not in given]
    code = app.start(argv=[command, *extra, *args])
    sys.exit(code or 0)


PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@cli.command(context_settings=PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker (extra options go to `celery worker`, e.g. -Q fraud -c 2)."""
    level = _app().runtime.settings.log_level
    _celery("worker", celery_args, [f"--loglevel={level}"])


@cli.command(context_settings=PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat with every enabled plugin's schedule."""
    level = _app().runtime.settings.log_level
    _celery("beat", celery_args, [f"--loglevel={level}"])


@cli.command(context_settings=PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def flower(celery_args: tuple[str, ...]) -> None:
    """Run Flower with basic auth (FLOWER_PORT, FLOWER_BASIC_AUTH), /metrics included.

    HTTPS: pass Flower's own options, `banktasks flower --certfile=cert.pem --keyfile=key.pem`.
    """
    from core.flower import secure_flower

    settings = _app().runtime.settings
    secure_flower(settings.flower_basic_auth)
    _celery(
        "flower",
        celery_args,
        [
            f"--port={settings.flower_port}",
            f"--basic-auth={settings.flower_basic_auth}",
            "--address=127.0.0.1",
        ],
    )


def plugin_rows(app: Any) -> list[dict[str, Any]]:
    """One dict per installed plugin: what `banktasks plugins` shows."""
    runtime = app.runtime
    rows = []
    for name, info in runtime.plugins.infos.items():
        tasks = sorted(t for t, spec in runtime.tasks.items() if t.startswith(f"{name}."))
        schedules = {
            key: {"task": entry["task"], "schedule": str(entry["schedule"])}
            for key, entry in app.conf.beat_schedule.items()
            if entry["task"].startswith(f"{name}.")
        }
        rows.append(
            {
                "name": name,
                "version": info.version,
                "source": info.source,
                "module": info.module,
                "enabled": info.enabled,
                "tasks": tasks,
                "schedules": schedules,
                "queues": sorted({app.tasks[t].route_queue for t in tasks}),
                "hooks": list(info.hooks),
            }
        )
    return rows


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins: enabled, tasks, schedules, queues, hooks."""
    rows = plugin_rows(_app())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        click.echo(f"{row['name']} {row['version'] or ''} ({state}, {row['source']})")
        if not row["enabled"]:
            continue
        click.echo(f"  tasks:     {', '.join(row['tasks']) or '-'}")
        sched = [f"{k} [{v['schedule']}]" for k, v in row["schedules"].items()]
        click.echo(f"  schedules: {', '.join(sched) or '-'}")
        click.echo(f"  queues:    {', '.join(row['queues']) or '-'}")
        click.echo(f"  hooks:     {', '.join(row['hooks'])}")


@cli.group()
def db() -> None:
    """Create tables and seed synthetic data."""


@db.command("init")
def db_init() -> None:
    """Create the tables of the core and of every enabled plugin."""
    runtime = _app().runtime
    tables = runtime.db.create_all()
    click.echo(
        f"created {len(tables)} tables in {runtime.db.url.split('@')[-1]}: {', '.join(tables)}"
    )


@db.command("seed")
@click.option("--users", default=100, show_default=True, type=click.IntRange(1))
@click.option("--transactions", default=5000, show_default=True, type=click.IntRange(0))
@click.option("--seed", "seed_value", default=42, show_default=True, type=int)
@click.option("--days", default=30, show_default=True, type=click.IntRange(2))
@click.option("--reset", is_flag=True, help="Drop and recreate all tables first.")
@click.option("--json", "as_json", is_flag=True, help="Print the full summary as JSON.")
def db_seed(
    users: int, transactions: int, seed_value: int, days: int, reset: bool, as_json: bool
) -> None:
    """Write deterministic customers, accounts and transactions with planted fraud patterns."""
    import time

    from core import seed as seeding

    runtime = _app().runtime
    if reset:
        seeding.reset(runtime.db)
    started = time.perf_counter()
    summary = seeding.seed(
        runtime.db, users=users, transactions=transactions, seed_value=seed_value, days=days
    )
    elapsed = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({**summary.as_dict(full=True), "seconds": round(elapsed, 3)}))
    else:
        data = summary.as_dict()
        click.echo(f"seeded in {elapsed:.2f}s: " + ", ".join(f"{k}={v}" for k, v in data.items()))


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` pairs → kwargs; values that parse as JSON are taken as JSON."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected key=value", param_hint="ARGS")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        kwargs[key] = value
    return kwargs


@cli.command()
@click.argument("task_name")
@click.argument("args", nargs=-1)
@click.option("--wait/--no-wait", default=False, help="Wait for the result and print it.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait.")
def run(task_name: str, args: tuple[str, ...], wait: bool, timeout: float) -> None:
    """Send TASK (name or plugin.name) with key=value arguments through the queue."""
    from core.tasks import resolve

    app = _app()
    try:
        celery_task = resolve(task_name, app)
    except (LookupError, AttributeError, ImportError) as exc:
        raise click.ClickException(str(exc)) from None
    result = celery_task.apply_async(kwargs=parse_assignments(args))
    click.echo(f"sent {celery_task.name} id={result.id}", err=True)
    if wait:
        value = result.get(timeout=timeout, propagate=False)
        if result.failed():
            raise click.ClickException(f"{celery_task.name} failed: {value!r}")
        click.echo(json.dumps(value, indent=2, default=str))


@cli.command()
@click.option("--transactions", default=3000, show_default=True, type=click.IntRange(100))
@click.option("--users", default=50, show_default=True, type=click.IntRange(2))
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait per task.")
def demo(transactions: int, users: int, timeout: float) -> None:
    """Run every plugin's task end to end on the embedded default (fresh var/)."""
    from core.demo import run_demo

    sys.exit(run_demo(transactions, users, timeout))


@cli.group()
def failed() -> None:
    """Tasks that failed for good (dead letters): list them, send them again."""


@failed.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--all", "include_retried", is_flag=True, help="Include already retried ones.")
@click.option("--json", "as_json", is_flag=True)
def failed_list(limit: int, include_retried: bool, as_json: bool) -> None:
    """Show dead letters, newest first."""
    from core.deadletter import list_failed

    _app()
    rows = [row.as_dict() for row in list_failed(limit, include_retried)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no failed tasks")
    for row in rows:
        click.echo(
            f"{row['id']:>5}  {row['failed_at'][:19]}  {row['task']}  [{row['reason']}, "
            f"{row['attempts']} attempt(s)]  {row['error'][:120]}"
        )


@failed.command("retry")
@click.argument("failed_ids", nargs=-1, type=int, required=True)
def failed_retry(failed_ids: tuple[int, ...]) -> None:
    """Send the task of each dead letter again, with the same arguments."""
    from core.deadletter import retry_failed

    _app()
    for failed_id in failed_ids:
        try:
            click.echo(f"{failed_id}: sent again as {retry_failed(failed_id)}")
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None


@cli.group()
def broker() -> None:
    """Start, stop or check the embedded Valkey broker (used when REDIS_URL is unset)."""


def _embedded() -> Any:
    app = _app()
    if app.embedded is None:
        raise click.ClickException("REDIS_URL is set: there is no embedded broker to manage")
    return app.embedded


@broker.command("start")
def broker_start() -> None:
    """Start the embedded broker (no-op if it runs)."""
    url = _embedded().ensure_running()
    click.echo(f"embedded Valkey running at {url.split('@')[-1]}")


@broker.command("stop")
def broker_stop() -> None:
    """Stop the embedded broker (its AOF keeps queued messages)."""
    stopped = _embedded().stop()
    click.echo("embedded Valkey stopped" if stopped else "embedded Valkey was not running")


@broker.command("status")
def broker_status() -> None:
    """Exit 0 when the broker answers PING, 1 otherwise."""
    app = _app()
    if app.embedded is not None:
        running = app.embedded.is_running()
    else:
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
            running = True
        except Exception:
            running = False
    click.echo("broker: up" if running else "broker: down")
    sys.exit(0 if running else 1)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `banktasks` console script."""
    try:
        app = _app()
        settings = app.runtime.settings
        configure_logging(settings.log_format, settings.log_level)
        app.runtime.plugins.pm.hook.register_commands(cli=cli)
    except ConfigError as exc:
        click.echo(f"banktasks: configuration error: {exc}", err=True)
        sys.exit(2)
    try:
        cli.main(args=argv, prog_name="banktasks", standalone_mode=True)
    except BanktasksError as exc:
        click.echo(f"banktasks: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
