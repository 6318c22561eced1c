"""Settings of the notifications plugin.

The seed's and DESIGN's un-prefixed names are read as they are (`EMAIL_BACKEND`,
`SMTP_HOST`, `ADMIN_EMAIL`, `DEFAULT_FROM_EMAIL`, …); each is also accepted with the
plugin prefix (`NOTIFICATIONS_EMAIL_BACKEND`; the un-prefixed name wins when both are
set). Plugin-own knobs use the prefix: `NOTIFICATIONS_OUTBOX_DIR`, `NOTIFICATIONS_RETRY_BACKOFF`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from core import PluginSettings
from core.validators import Directory, is_loopback
from plugins.notifications.validation import check_address

PREFIX = "NOTIFICATIONS_"
MAX_BACKOFF = 1800  # stays well below the broker visibility timeout (3600 s)
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def _env(name: str, **kwargs: Any) -> Any:
    """A field read from `NAME`, or else from `NOTIFICATIONS_NAME`."""
    return Field(validation_alias=AliasChoices(name, PREFIX + name), **kwargs)


class NotificationsSettings(PluginSettings):
    """E-mail channel, SMTP connection, addresses, outbox folder and retry backoff."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    email_backend: str = _env(
        "EMAIL_BACKEND",
        default="file",
        description="The channel that sends: `file`, `smtp`, `console`, or one a plugin adds.",
    )
    smtp_host: str = _env(
        "SMTP_HOST",
        default="localhost",
        min_length=1,
        description="SMTP server: a host name or IP address (no scheme, no port).",
    )
    smtp_port: int | None = _env(
        "SMTP_PORT",
        default=None,
        ge=1,
        le=65535,
        description="SMTP port; unset: 25, 587 (starttls) or 465 (ssl) after SMTP_SECURITY.",
    )
    smtp_username: str | None = _env(
        "SMTP_USERNAME",
        default=None,
        description="SMTP login user; unset: no login. Refused with SMTP_SECURITY=none "
        "to a host that is not loopback.",
    )
    smtp_password: SecretStr | None = _env(
        "SMTP_PASSWORD",
        default=None,
        description="SMTP login password (a secret: never logged or shown); needs SMTP_USERNAME.",
    )
    smtp_security: Literal["none", "starttls", "ssl"] = _env(
        "SMTP_SECURITY",
        default="none",
        description="`none`, `starttls` or `ssl` (implicit TLS).",
    )
    smtp_timeout: float = _env(
        "SMTP_TIMEOUT",
        default=10.0,
        gt=0,
        le=300,
        description="Seconds for each SMTP network operation.",
    )
    smtp_ca_file: Path | None = _env(
        "SMTP_CA_FILE",
        default=None,
        description="CA bundle that verifies the server's certificate (a private CA); "
        "unset: the system store.",
    )
    admin_email: str = _env(
        "ADMIN_EMAIL",
        default="admin@banking.com",
        description="Recipient of `send_admin_email` (report summaries, one e-mail per new fraud "
        "case).",
    )
    default_from_email: str = _env(
        "DEFAULT_FROM_EMAIL",
        default="noreply@banking.com",
        description="From of every e-mail (may be `Name <addr>`).",
    )
    outbox_dir: Directory = Field(
        None,
        description="Folder of the `file` channel; empty: `<BANKTASKS_VAR_DIR>/outbox`.",
    )
    retry_backoff: int = Field(
        30,
        ge=1,
        le=MAX_BACKOFF,
        description="Seconds; the wait before retry n is drawn from [0, backoff x 2^n].",
    )
    retry_backoff_max: int = Field(
        900,
        ge=1,
        le=MAX_BACKOFF,
        description="The longest single wait between retries, in seconds (at most 1800).",
    )

    @field_validator("email_backend", "smtp_security", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("smtp_username", "smtp_password", "smtp_port", "smtp_ca_file", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smtp_host")
    @classmethod
    def _host(cls, value: str) -> str:
        host = value.strip()
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        if len(host) > 253 or not HOSTNAME.fullmatch(host):
            raise ValueError(
                "expected a host name or IP address such as smtp.example.com (no scheme, "
                "port or path: the port is SMTP_PORT)"
            )
        return host

    @field_validator("admin_email", "default_from_email")
    @classmethod
    def _address(cls, value: str, info: ValidationInfo) -> str:
        try:
            return check_address(value.strip())
        except ValueError as exc:
            raise ValueError(f"{str(info.field_name).upper()}: {exc}") from None

    @model_validator(mode="after")
    def _consistent(self) -> NotificationsSettings:
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError(
                f"NOTIFICATIONS_RETRY_BACKOFF_MAX ({self.retry_backoff_max}) must be >= "
                f"NOTIFICATIONS_RETRY_BACKOFF ({self.retry_backoff})"
            )
        if self.smtp_password is not None and not self.smtp_username:
            raise ValueError("SMTP_PASSWORD is set but SMTP_USERNAME is not; set both or neither")
        if self.smtp_username and self.smtp_security == "none" and not is_loopback(self.smtp_host):
            raise ValueError(
                "SMTP_USERNAME is set with SMTP_SECURITY=none: the password would cross the "
                "network in clear text; set SMTP_SECURITY=starttls or ssl"
            )
        return self

    @property
    def port(self) -> int:
        """SMTP_PORT, or the usual port for SMTP_SECURITY (25, 587 for starttls, 465 for ssl)."""
        return self.smtp_port or DEFAULT_PORTS[self.smtp_security]

    def outbox_path(self, var_dir: Path) -> Path:
        """Where the file backend writes: NOTIFICATIONS_OUTBOX_DIR or `<var_dir>/outbox`."""
        return self.outbox_dir or var_dir / "outbox"
