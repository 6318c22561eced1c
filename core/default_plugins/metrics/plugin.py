"""The `metrics` default plugin's hook implementations and `banktasks metrics serve`."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from core import ConfigError, get_logger, hookimpl
from core.default_plugins.metrics import hookspecs
from core.default_plugins.metrics.settings import MetricsSettings
from core.default_plugins.metrics.worker import PLUGIN, connect, task_metrics
from core.validators import is_loopback, weak_login

log = get_logger("banktasks.metrics")


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add the hooks metrics owns: register_metrics, collect_metrics."""
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_settings() -> tuple[str, type[MetricsSettings]]:
    """`METRICS_ADDRESS`, `METRICS_PORT`, `METRICS_BASIC_AUTH`, `METRICS_CERTFILE`,
    `METRICS_KEYFILE`, `METRICS_BEHIND_TLS_PROXY`, `METRICS_DIR`, `METRICS_HEARTBEAT_SECONDS`."""
    return PLUGIN, MetricsSettings


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Instrument this app's workers (signals; nothing happens outside a worker)."""
    connect(app)


@hookimpl
def on_task_failed(task: Any, task_id: str, exception: BaseException, kwargs: Any) -> None:
    """Count a task that failed for good as a dead letter (reason: the exception's class)."""
    metrics = task_metrics(task.app)
    if metrics is not None:
        metrics.dead_letter(task.name, type(exception).__name__)


@hookimpl
def on_message_rejected(queue: str, reason: str, message: dict[str, Any]) -> None:
    """Count a message the worker set aside unread as a dead letter (reason: why)."""
    from core import current_app

    metrics = task_metrics(current_app())
    if metrics is not None:
        metrics.dead_letter(str(message.get("task") or "unknown")[:200], reason)


def start_problems(settings: MetricsSettings, production: bool, address: str) -> list[str]:
    """Why production refuses to start the endpoint with these settings (empty: it may)."""
    problems = []
    if production:
        weak = weak_login(settings.basic_auth.split(","), "METRICS_BASIC_AUTH")
        if weak:
            problems.append(weak)
        tls = settings.certfile is not None
        if not (tls or is_loopback(address) or settings.behind_tls_proxy):
            problems.append(
                f"the metrics endpoint would serve plain HTTP on {address or 'every address'} "
                "(METRICS_ADDRESS), refused when BANKTASKS_ENV=production: set METRICS_CERTFILE "
                "and METRICS_KEYFILE, listen on 127.0.0.1, or set METRICS_BEHIND_TLS_PROXY=true "
                "if a TLS proxy in front is its only way in"
            )
    if (settings.certfile is None) != (settings.keyfile is None):
        problems.append("METRICS_CERTFILE and METRICS_KEYFILE go together: set both or neither")
    return problems


def build_registry(app: Any) -> Any:
    """A registry with everything the endpoint serves (see `collect`)."""
    from prometheus_client import CollectorRegistry

    from core.default_plugins.metrics.collect import BanktasksCollector

    settings: MetricsSettings = app.runtime.settings_for(PLUGIN)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BanktasksCollector(app, settings.folder(app.runtime.settings.var_dir)))
    return registry


@click.group("metrics")
def metrics_group() -> None:
    """The Prometheus metrics endpoint (see docs/metrics.md)."""


@metrics_group.command("serve")
@click.option("--address", default=None, help="Listen on this address (METRICS_ADDRESS).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="METRICS_PORT.")
def serve_command(address: str | None, port: int | None) -> None:
    """Serve /metrics with basic auth (METRICS_BASIC_AUTH) on METRICS_ADDRESS:METRICS_PORT
    (127.0.0.1:9808), HTTPS with METRICS_CERTFILE/METRICS_KEYFILE. Stops on SIGTERM."""
    from core.celery import default_app
    from core.default_plugins.metrics.server import make_server, parse_logins, use_tls

    app = default_app()
    settings: MetricsSettings = app.runtime.settings_for(PLUGIN)
    production = app.runtime.settings.is_production
    address = settings.address if address is None else address
    port = settings.port if port is None else port
    problems = start_problems(settings, production, address)
    if problems:
        raise ConfigError("; ".join(problems))
    app.ensure_broker()
    server = make_server(address, port, build_registry(app), parse_logins(settings.basic_auth))
    if settings.certfile and settings.keyfile:
        use_tls(server, str(settings.certfile), str(settings.keyfile))
    elif production and not is_loopback(address):
        log.warning(
            "metrics endpoint serves plain HTTP on a network address: a TLS proxy in front "
            "must be its only way in",
            address=address,
            setting="METRICS_BEHIND_TLS_PROXY",
        )

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    scheme = "https" if settings.certfile else "http"
    log.info("metrics_endpoint_listening", url=f"{scheme}://{address}:{port}/metrics")
    click.echo(f"metrics on {scheme}://{address}:{port}/metrics (basic auth)", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks metrics serve`."""
    cli.add_command(metrics_group)
