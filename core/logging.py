"""Structured logging: structlog for our lines and Celery's, with a redaction processor.

Console output in development, JSON with `LOG_FORMAT=json`. Inside a task every
line carries `task_id`, `task_name`, `plugin` and `retries` (bound by the task
base class through contextvars). Redaction masks e-mail addresses and account
numbers (last four shown), passwords in URLs, and drops the values of secret keys.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|api[_-]?key|credential|cookie|auth",
    re.IGNORECASE,
)
EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b"
)
IBAN = re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]{8,30}\b")
LONG_DIGITS = re.compile(r"(?<![\w-])(?<!\d\.)\d{8,19}(?![\w-]|\.\d)")  # "acct 4012345678." too
SAFE_KEYS = {"task_id", "timestamp", "level", "logger", "event_id", "retries", "plugin"}
REDACTED = "[REDACTED]"


def mask_number(number: str) -> str:
    """Keep the last four characters of an account or card number: `****1234`."""
    return "****" + number[-4:]


def mask_url_password(url: str) -> str:
    """Mask the password of one URL, whatever characters it holds: `redis://:***@host/0`.

    Everything between the first `:` after `scheme://` and the last `@` is the password
    (user names keep showing). A value without `scheme://…:…@` is returned as it is.
    """
    head, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not (sep and at and colon):
        return url
    return f"{head}://{user}:***@{host}"


def mask_url_passwords(text: str) -> str:
    """Mask the password of `scheme://user:password@host` in free text: `user:***@host`.

    The password may hold `@`, spaces, `:` or `/` (parsers read it up to the last `@`),
    so on each line everything from the first `:` after the first `://` up to the last
    `@` is masked: maybe more than the password (an e-mail address later on the same
    line), never less. Linear in the length of the text, whatever it holds.
    """
    if "://" not in text:
        return text
    lines = text.split("\n")
    for index, line in enumerate(lines):
        start = line.find("://")
        if start == -1:
            continue
        colon = line.find(":", start + 3)
        last_at = line.rfind("@")
        if colon != -1 and last_at > colon:
            lines[index] = f"{line[: colon + 1]}***{line[last_at:]}"
    return "\n".join(lines)


def redact_text(text: str) -> str:
    """Mask e-mail addresses, account numbers and URL passwords inside a string."""
    text = mask_url_passwords(text)
    text = EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = IBAN.sub(lambda m: mask_number(m.group(0)), text)
    return LONG_DIGITS.sub(lambda m: mask_number(m.group(0)), text)


def redact_value(key: str, value: Any) -> Any:
    """Redact one value of an event dict, recursing into dicts and lists."""
    if key in SAFE_KEYS:
        return value
    if SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value("", v) for v in value)
    return value


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: apply `redact_value` to every key of the event."""
    for key in list(event_dict):
        event_dict[key] = redact_value(key, event_dict[key])
    return event_dict


def _render_exception_then_redact() -> list[Any]:
    return [structlog.processors.format_exc_info, redact]


def configure_logging(fmt: str = "console", level: str | int = "INFO", stream: Any = None) -> None:
    """Route structlog and stdlib logging (Celery's too) through one redacting pipeline."""
    if isinstance(level, int):
        level = logging.getLevelName(level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_render_exception_then_redact(),
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("banktasks")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "banktasks":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def get_logger(name: str | None = None, **bound: Any) -> Any:
    """A structlog logger (use it instead of `logging.getLogger`)."""
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
