"""Validators that several plugins share: names, file extensions, directories, UTC moments.

Use them in settings models and task arguments (`Directory`, `UTCMoment`) and in
the `check` of `PluginSet.collect_named` (`check_format`), so that every plugin
refuses bad input with the same words.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from core.errors import ConfigError

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""A registered name (format, channel, rule set): lower-case letters, digits, `_`, `-`."""
EXTENSION = re.compile(r"(?=.{1,16}$)[A-Za-z0-9]+([._-][A-Za-z0-9]+)*")
"""A file extension without the leading dot (`csv`, `csv.gz`), at most 16 characters."""


def is_name(value: str) -> bool:
    """True when `value` is a plain registered name (`csv`, `sanctions_list`)."""
    return isinstance(value, str) and NAME.fullmatch(value) is not None


def check_format(plugin: str, fmt: Any, what: str = "format") -> None:
    """A registered format needs a plain lower-case `name` and a plain `extension`."""
    if not is_name(fmt.name):
        raise ConfigError(
            f"plugin {plugin!r}: {what} {fmt.name!r} needs a name of lower-case letters, "
            "digits, '_' and '-' (e.g. 'csv')"
        )
    extension = getattr(fmt, "extension", None)
    if not isinstance(extension, str) or not EXTENSION.fullmatch(extension):
        raise ConfigError(
            f"plugin {plugin!r}: {what} {fmt.name!r} has extension {extension!r}; "
            "expected letters and digits without a dot in front (e.g. 'csv')"
        )


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _not_a_file(value: Path | None) -> Path | None:
    if value is not None and value.exists() and not value.is_dir():
        raise ValueError(f"{value} exists and is not a directory; give a directory path")
    return value


Directory = Annotated[Path | None, BeforeValidator(_blank_is_none), AfterValidator(_not_a_file)]
"""An optional directory setting: empty means the default, an existing file is refused."""


def as_utc(moment: datetime) -> datetime:
    """Naive moments are taken as UTC; aware ones are converted to UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is out of range once converted to UTC") from None


UTCMoment = Annotated[datetime, AfterValidator(as_utc)]
"""A datetime argument or field, always aware UTC (naive input is taken as UTC)."""


LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str | None) -> bool:
    """True for `localhost` and the loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


# ------------------------------------------------------------------ passwords

MIN_PASSWORD = 12
COMMON_PASSWORDS = frozenset(
    {
        "password1234",
        "password12345",
        "password123456",
        "passwordpassword",
        "password1234!",
        "passw0rd1234",
        "p@ssw0rd1234",
        "p@ssword1234",
        "mypassword123",
        "secretpassword",
        "supersecretpassword",
        "secret123456",
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456789abc",
        "12345678abcd",
        "111111111111",
        "qwertyuiop123",
        "qwertyuiopasdf",
        "qwerty123456",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "qazwsxedcrfv",
        "zaq12wsxcde3",
        "abcdefghijkl",
        "abcdefghijklmnop",
        "abc123abc123",
        "abcd1234abcd",
        "administrator",
        "administrator1",
        "admin1234567",
        "adminadminadmin",
        "adminpassword",
        "changemechangeme",
        "changeme1234",
        "changeme12345",
        "letmeinletmein",
        "iloveyou1234",
        "welcome12345",
        "welcome123456",
        "trustno1trustno1",
        "correcthorsebatterystaple",
        "flowerpassword",
        "flowerflower",
        "celeryflower",
        "banktasks123",
        "banktasks1234",
        "monitoring123",
    }
)
"""Passwords of 12+ characters that production still refuses for a web login."""


def weak_login(pairs: list[str], where: str) -> str | None:
    """Why production refuses these `user:password` pairs of the setting `where`, in one
    line; None if it does not (Flower's and the metrics endpoint's logins).
    The line never shows a password (nor a user name: it may be a misplaced password)."""
    for index, pair in enumerate(pairs, 1):
        user, _, password = pair.partition(":")
        reason = None
        if len(password) < MIN_PASSWORD:
            reason = f"is shorter than {MIN_PASSWORD} characters"
        elif password.lower() == user.lower():
            reason = "is the same as the user name"
        elif password.lower() in COMMON_PASSWORDS or len(set(password)) < 5:
            reason = "is a common password"
        if reason:
            which = f" (pair {index} of {len(pairs)})" if len(pairs) > 1 else ""
            return (
                f"{where}{which}: the password {reason}, refused when BANKTASKS_ENV=production; "
                f"use at least {MIN_PASSWORD} random characters (e.g. `openssl rand -base64 18`)"
            )
    return None


def check_logins(value: str, where: str) -> str:
    """A web login setting (`user:password`, several separated by commas): `value` if
    every pair has a user and a password, else ValueError saying what `where` expects."""
    for pair in value.split(","):
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"expected user:password (several separated by commas){where}")
    return value
