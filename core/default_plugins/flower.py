"""Default plugin `flower`: Flower with authentication always on, `/metrics` included.

Flower 2 serves `/metrics` (Prometheus) and `/healthcheck` without asking for
credentials even when basic auth is configured. This plugin puts `/metrics`
behind the same authentication as the UI and the API, and makes
`FLOWER_BASIC_AUTH` the credentials whether Flower is started as
`banktasks flower` or `celery -A core flower`. `/healthcheck` stays open: it
returns only "OK" and is what load balancers probe.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from pydantic import Field, field_validator

from core import ConfigError, PluginSettings, hookimpl

_patched = False


class FlowerSettings(PluginSettings):
    """`FLOWER_PORT` and `FLOWER_BASIC_AUTH` (the seed's names)."""

    port: int = Field(5555, ge=1, le=65535, description="Port Flower listens on (127.0.0.1)")
    basic_auth: str = Field(
        "admin:admin",
        description="user:password pairs (comma separated); admin:admin is refused in production",
    )

    @field_validator("basic_auth")
    @classmethod
    def _check_basic_auth(cls, value: str) -> str:
        for pair in value.split(","):
            user, sep, password = pair.partition(":")
            if not sep or not user or not password:
                raise ValueError("expected user:password (several separated by commas)")
        return value


def secure_flower(basic_auth: str) -> None:
    """Require authentication on Flower's `/metrics`; default FLOWER_BASIC_AUTH from settings."""
    global _patched
    os.environ.setdefault("FLOWER_BASIC_AUTH", basic_auth)
    if _patched:
        return
    import tornado.web
    from flower.views import monitor

    original = monitor.Metrics.get

    @tornado.web.authenticated
    async def get(self: Any) -> None:
        await original(self)

    monitor.Metrics.get = get  # type: ignore[method-assign]
    _patched = True


@hookimpl
def register_settings() -> tuple[str, type[FlowerSettings]]:
    """`FLOWER_PORT`, `FLOWER_BASIC_AUTH`."""
    return "flower", FlowerSettings


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Refuse admin:admin in production; secure `celery -A core flower` like ours."""
    ours: FlowerSettings = app.runtime.settings_for("flower")
    if settings.is_production and "admin:admin" in ours.basic_auth.split(","):
        raise ConfigError(
            "FLOWER_BASIC_AUTH=admin:admin is refused when BANKTASKS_ENV=production; "
            "set a strong user:password"
        )
    if "flower" in sys.argv[1:]:
        secure_flower(ours.basic_auth)


@click.command(
    "flower", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def flower_command(celery_args: tuple[str, ...]) -> None:
    """Run Flower with basic auth (FLOWER_PORT, FLOWER_BASIC_AUTH), /metrics included.

    HTTPS: pass Flower's own options, `banktasks flower --certfile=cert.pem --keyfile=key.pem`.
    """
    from core.celery import default_app
    from core.cli import run_celery

    ours: FlowerSettings = default_app().runtime.settings_for("flower")
    secure_flower(ours.basic_auth)
    run_celery(
        "flower",
        celery_args,
        [f"--port={ours.port}", f"--basic-auth={ours.basic_auth}", "--address=127.0.0.1"],
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    """`banktasks flower`."""
    cli.add_command(flower_command)
