"""The `banktasks` command line (click). Plugins add commands with `register_commands`."""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import click

from core.errors import BanktasksError, ConfigError
from core.logging import configure_logging


def _app() -> Any:
    from core.celery import default_app

    return default_app()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """banktasks: background work for a banking backend (Celery + pluggy plugins)."""


def run_celery(command: str, args: tuple[str, ...], defaults: list[str]) -> None:
    """Run `celery <command>` on the default app; `defaults` are options unless given in `args`."""
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
    """Run a Celery worker (extra options go to `celery worker`, e.g. -Q <queue> -c 2)."""
    level = _app().runtime.settings.log_level
    run_celery("worker", celery_args, [f"--loglevel={level}"])


@cli.command(context_settings=PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat with every enabled plugin's schedule."""
    level = _app().runtime.settings.log_level
    run_celery("beat", celery_args, [f"--loglevel={level}"])


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
    """Create the tables (plugins add commands here, e.g. `db seed`)."""


@db.command("init")
@click.option("--json", "as_json", is_flag=True, help="Print what was done per chain as JSON.")
def db_init(as_json: bool) -> None:
    """Create the tables of the core and of every enabled plugin, or upgrade them.

    The same as `db upgrade`: a new database gets every table; one made by an older
    version is migrated in place. With DATA_MAPPING the mapping is checked against the
    bank's database first, and the core's users, accounts and transactions are neither
    created nor altered (the bank's are read).
    """
    _upgrade(as_json)


@db.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print what was done per chain as JSON.")
def db_upgrade(as_json: bool) -> None:
    """Apply the migrations of the core's and every plugin's version chain (Alembic).

    Per chain: migrated to its head; or, on a database made before migrations
    existed, stamped at its baseline and migrated in place; or, when none of its
    tables exist, created from the models. Data is kept.
    """
    _upgrade(as_json)


def _upgrade(as_json: bool) -> None:
    from core.factory import check_data_mapping
    from core.migrate import upgrade

    runtime = _app().runtime
    try:
        check_data_mapping(runtime)
        done = upgrade(runtime)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(done))
        return
    where = runtime.db.url.split("@")[-1]
    click.echo(f"{where}: {', '.join(f'{chain} {what}' for chain, what in done.items())}")


@db.command("indexes")
def db_indexes() -> None:
    """Print the CREATE INDEX statements the bank's mapped tables need (DATA_MAPPING).

    banktasks never runs them: the bank's DBA does, with the rights banktasks lacks.
    """
    from core.sources import recommended_indexes

    runtime = _app().runtime
    mapping = runtime.settings.data_mapping
    if mapping is None or runtime.data_db is None:
        raise click.ClickException(
            "DATA_MAPPING is not set: banktasks' own tables come with their indexes"
        )
    for statement in recommended_indexes(mapping, runtime.data_db.dialect):
        click.echo(statement)


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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `banktasks` console script."""
    try:
        app = _app()
        settings = app.runtime.settings
        configure_logging(settings.log_format, settings.log_level)
        group = copy.deepcopy(cli)  # the plugins' commands go on a copy: `cli` stays the core's
        app.runtime.plugins.pm.hook.register_commands(cli=group)
    except ConfigError as exc:
        click.echo(f"banktasks: configuration error: {exc}", err=True)
        sys.exit(2)
    try:
        group.main(args=argv, prog_name="banktasks", standalone_mode=True)
    except BanktasksError as exc:
        click.echo(f"banktasks: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
