"""Default plugin `flower`: Flower with authentication always on, `/metrics` included,
on 127.0.0.1 unless asked otherwise.

Flower 2 serves `/metrics` (Prometheus) and `/healthcheck` without asking for
credentials even when basic auth is configured. This plugin puts `/metrics`
behind the same authentication as the UI and the API, and makes
`FLOWER_BASIC_AUTH`, `FLOWER_PORT` and `FLOWER_ADDRESS` (default 127.0.0.1: Flower's
own default is every address) the settings whether Flower is started as
`banktasks flower` or `celery -A core flower`; Flower's options (`--address=…`,
`--basic-auth=…`, its `FLOWER_*` variables, `flowerconfig.py`) still override them.
`/healthcheck` stays open: it returns only "OK" and is what load balancers probe.

With `BANKTASKS_ENV=production` a weak login is refused, and so is plain HTTP on an
address other than loopback, unless `FLOWER_BEHIND_TLS_PROXY=true` says a TLS proxy
is in front (then every start logs a warning).
"""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import Field, field_validator

from core import ConfigError, PluginSettings, get_logger, hookimpl
from core.validators import MIN_PASSWORD, check_logins, is_loopback, weak_login

"""Passwords of 12 characters or more that lists of leaked passwords rank high."""

_patched = False
_current: tuple[FlowerSettings, bool] | None = None
log = get_logger("banktasks.flower")


class FlowerSettings(PluginSettings):
    """`FLOWER_PORT`, `FLOWER_ADDRESS`, `FLOWER_BASIC_AUTH` (the seed's names), and
    `FLOWER_BEHIND_TLS_PROXY`."""

    port: int = Field(5555, ge=1, le=65535, description="Port Flower listens on")
    address: str = Field(
        "127.0.0.1",
        description="Address Flower listens on (`--address=` overrides it); in production "
        "anything but loopback needs --certfile/--keyfile or FLOWER_BEHIND_TLS_PROXY=true",
    )
    basic_auth: str = Field(
        "admin:admin",
        description="user:password pairs (comma separated); in production each password needs "
        "12 characters or more, not the user name, not a common password",
    )
    behind_tls_proxy: bool = Field(
        False,
        description="A TLS proxy in front of Flower is its only way in: production accepts "
        "plain HTTP on a non-loopback FLOWER_ADDRESS (every start logs a warning)",
    )

    @field_validator("basic_auth")
    @classmethod
    def _check_basic_auth(cls, value: str) -> str:
        return check_logins(value, "")


def plain_http_problem(address: str, settings: FlowerSettings) -> str | None:
    """Why production refuses to serve plain HTTP on `address`; None when it may."""
    if is_loopback(address) or settings.behind_tls_proxy:
        return None
    return (
        f"Flower would serve plain HTTP on {address or 'every address'} (--address / "
        "FLOWER_ADDRESS), refused when BANKTASKS_ENV=production: give --certfile and --keyfile "
        "(HTTPS), listen on 127.0.0.1, or set FLOWER_BEHIND_TLS_PROXY=true if a TLS proxy in "
        "front is its only way in"
    )


def _refuse(problem: str) -> None:
    print(f"banktasks: configuration error: {problem}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def check_flower_start(options: Any, flower_settings: dict[str, Any]) -> None:
    """Run by Flower once its options are read (environment, config file, command line) and
    before it listens: in production, refuse a weak login or plain HTTP on a network address,
    and warn when FLOWER_BEHIND_TLS_PROXY lets plain HTTP through."""
    if _current is None:
        return
    ours, production = _current
    if not production:
        return
    if not options.auth:  # not OAuth: basic auth is the only lock
        problem = (
            weak_login(list(options.basic_auth), "FLOWER_BASIC_AUTH / --basic-auth")
            if options.basic_auth
            else "Flower without --basic-auth (FLOWER_BASIC_AUTH) is refused when "
            "BANKTASKS_ENV=production; set a strong user:password"
        )
        if problem:
            _refuse(problem)
    if options.unix_socket or "ssl_options" in flower_settings or is_loopback(options.address):
        return
    problem = plain_http_problem(options.address, ours)
    if problem:
        _refuse(problem)
    log.warning(
        "Flower serves plain HTTP on a network address: a TLS proxy in front must be its "
        "only way in",
        address=options.address or "*",
        setting="FLOWER_BEHIND_TLS_PROXY",
    )


def secure_flower(settings: FlowerSettings, production: bool = False) -> None:
    """Make our settings Flower's defaults (its own options still override them), require
    authentication on `/metrics`, and check the options before Flower listens.

    Nothing goes into the environment or onto a command line (where `ps` would show the
    password): Flower's option values are set in this process.
    """
    global _patched, _current
    _current = (settings, production)
    from flower import command
    from tornado.options import options

    options.address = settings.address
    options.port = settings.port
    options.basic_auth = settings.basic_auth.split(",")
    if _patched:
        return
    import tornado.web
    from flower.views import monitor

    original = monitor.Metrics.get

    @tornado.web.authenticated
    async def get(self: Any) -> None:
        await original(self)

    monitor.Metrics.get = get  # type: ignore[method-assign]

    extract_settings = command.extract_settings

    def extract_then_check() -> None:
        extract_settings()
        check_flower_start(command.options, command.settings)

    command.extract_settings = extract_then_check
    _patched = True


@hookimpl
def register_settings() -> tuple[str, type[FlowerSettings]]:
    """`FLOWER_PORT`, `FLOWER_ADDRESS`, `FLOWER_BASIC_AUTH`, `FLOWER_BEHIND_TLS_PROXY`."""
    return "flower", FlowerSettings


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Refuse weak Flower logins in production; secure `celery -A core flower` like ours."""
    ours: FlowerSettings = app.runtime.settings_for("flower")
    if settings.is_production:
        if "admin:admin" in ours.basic_auth.split(","):
            raise ConfigError(
                "FLOWER_BASIC_AUTH=admin:admin is refused when BANKTASKS_ENV=production; "
                f"set a strong user:password (at least {MIN_PASSWORD} random characters)"
            )
        problem = weak_login(ours.basic_auth.split(","), "FLOWER_BASIC_AUTH")
        if problem:
            raise ConfigError(problem)
    if "flower" in sys.argv[1:]:
        secure_flower(ours, settings.is_production)


@click.command(
    "flower", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def flower_command(celery_args: tuple[str, ...]) -> None:
    """Run Flower with basic auth (FLOWER_BASIC_AUTH) on FLOWER_ADDRESS:FLOWER_PORT
    (127.0.0.1:5555), /metrics included.

    HTTPS: pass Flower's own options, `banktasks flower --certfile=cert.pem --keyfile=key.pem`.
    """
    from core.celery import default_app
    from core.cli import run_celery

    app = default_app()
    secure_flower(app.runtime.settings_for("flower"), app.runtime.settings.is_production)
    run_celery("flower", celery_args, [])


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks flower`."""
    cli.add_command(flower_command)
