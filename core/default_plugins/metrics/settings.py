"""`METRICS_*` settings of the metrics endpoint and the workers' instrumentation."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from core import PluginSettings
from core.validators import Directory, check_logins


class MetricsSettings(PluginSettings):
    """`METRICS_ADDRESS`, `METRICS_PORT`, `METRICS_BASIC_AUTH`, TLS, the data folder and
    the workers' heartbeat."""

    address: str = Field(
        "127.0.0.1",
        description="Address the metrics endpoint listens on; in production anything but "
        "loopback needs METRICS_CERTFILE/METRICS_KEYFILE or METRICS_BEHIND_TLS_PROXY=true",
    )
    port: int = Field(9808, ge=1, le=65535, description="Port the metrics endpoint listens on")
    basic_auth: str = Field(
        "admin:admin",
        description="user:password pairs (comma separated) Prometheus logs in with; required "
        "(an empty value is refused); in production each password needs 12 characters or "
        "more, not the user name, not a common password",
    )
    certfile: Path | None = Field(
        None, description="TLS certificate (PEM): the endpoint serves HTTPS with METRICS_KEYFILE"
    )
    keyfile: Path | None = Field(None, description="TLS private key (PEM) of METRICS_CERTFILE")
    behind_tls_proxy: bool = Field(
        False,
        description="A TLS proxy in front of the endpoint is its only way in: production "
        "accepts plain HTTP on a non-loopback METRICS_ADDRESS (every start logs a warning)",
    )
    dir: Directory = Field(
        None,
        description="Folder of the workers' metric files (PROMETHEUS_MULTIPROC_DIR); default "
        "<BANKTASKS_VAR_DIR>/metrics. Workers and the endpoint must see the same folder; a "
        "tmpfs is fastest",
    )
    heartbeat_seconds: int = Field(
        10,
        ge=1,
        le=3600,
        description="How often each worker says it is up; a worker silent for three times "
        "this is no longer counted in banktasks_workers_up",
    )

    @field_validator("basic_auth")
    @classmethod
    def _check_basic_auth(cls, value: str) -> str:
        return check_logins(value, "; the metrics endpoint always asks for a login")

    def folder(self, var_dir: Path) -> Path:
        """Where the workers' metric files are."""
        return self.dir or var_dir / "metrics"
