"""Argument types of the notification tasks, checked in the caller and again in the worker.

They are small `str`/`int` subclasses with a pydantic schema (rather than
`Annotated[...]` aliases) so that their constraints survive
`typing.get_type_hints()`, which the core uses to build the argument model.
Each check raises ValueError with a message that says what was wrong.
"""

from __future__ import annotations

import email.policy
import re
from email.utils import parseaddr
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

MAX_SUBJECT = 998  # RFC 5322 line length limit, without CRLF
MAX_BODY_BYTES = 1024 * 1024  # 1 MiB of UTF-8 per body part
MAX_KEY = 200
MAX_ADDRESS = 254
EVENT = re.compile(r"^[a-z][a-z0-9-]{0,39}:[A-Za-z0-9._:-]{1,120}$")

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")  # C0 but TAB, DEL, breaks
LINE_BREAKS = "\r\n\x85\u2028\u2029"  # what str.splitlines() (and so `email`) breaks on
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})*$")


def check_subject(value: str) -> str:
    """A one-line subject: not blank, at most 998 characters, no CR, LF or other control."""
    if not value.strip():
        raise ValueError("the subject is empty; give a short one-line subject")
    if len(value) > MAX_SUBJECT:
        raise ValueError(f"the subject has {len(value)} characters; at most {MAX_SUBJECT} allowed")
    if any(c in value for c in LINE_BREAKS):
        raise ValueError(
            "the subject contains a line break (CR/LF), which would inject mail headers; "
            "give a single line"
        )
    if _CONTROL.search(value):
        raise ValueError("the subject contains control characters; give plain text")
    _check_unicode("subject", value)
    decoded = str(email.policy.SMTP.header_factory("subject", value))
    if any(c in decoded for c in LINE_BREAKS) or _CONTROL.search(decoded):
        # `email` decodes RFC 2047 words (=?utf-8?q?Hi=0D=0ABcc:…?=) and, before Python
        # 3.11.10 / 3.12.5 (CVE-2024-6923), writes what they hide as raw header lines.
        raise ValueError(
            "the subject decodes (RFC 2047 encoded words) to a line break or control "
            "characters, which would inject mail headers; give plain text"
        )
    return value


def _check_unicode(what: str, value: str) -> None:
    """Refuse lone surrogates: they pass JSON but no e-mail can be encoded from them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"the {what} is not valid Unicode text (a lone surrogate)") from None


def check_body(value: str) -> str:
    """A message body: not blank, at most 1 MiB once encoded as UTF-8."""
    if not value.strip():
        raise ValueError("the message body is empty")
    _check_unicode("message body", value)
    size = len(value.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise ValueError(f"the message body is {size} bytes; at most {MAX_BODY_BYTES} allowed")
    return value


def check_key(value: str) -> str:
    """An idempotency key: 1 to 200 printable characters."""
    if not value or len(value) > MAX_KEY:
        raise ValueError(f"the idempotency key must have 1 to {MAX_KEY} characters")
    if not value.isprintable():
        raise ValueError("the idempotency key must be printable (no control characters)")
    return value


def check_event(value: str) -> str:
    """An event name `<kind>:<id>` as this plugin's hooks use it (`fraud-case:7`)."""
    if not EVENT.fullmatch(value):
        raise ValueError(
            "the event must look like `fraud-case:7`: a lower-case name, ':' and an id of "
            "letters, digits, '.', '_', ':' or '-' (set by this plugin's hooks, not by callers)"
        )
    return value


def check_address(value: str) -> str:
    """An e-mail address `local@domain`, or `Display Name <local@domain>`; returned as given."""
    if _CONTROL.search(value):
        raise ValueError("an e-mail address cannot contain line breaks or control characters")
    address = bare_address(value)
    if len(address) > MAX_ADDRESS or not ADDRESS.match(address):
        raise ValueError("expected an e-mail address such as admin@example.com")
    if len(address.split("@", 1)[0]) > 64:
        raise ValueError("the part before @ of an e-mail address has at most 64 characters")
    return value


def bare_address(value: str) -> str:
    """`Bank <noreply@bank.example>` → `noreply@bank.example` (the envelope address)."""
    return parseaddr(value)[1] if "<" in value else value.strip()


class _CheckedStr(str):
    _check: Any = None

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(cls._check, core_schema.str_schema())


class Subject(_CheckedStr):
    """An e-mail subject (see `check_subject`)."""

    _check = staticmethod(check_subject)


class Body(_CheckedStr):
    """A plain-text or HTML body (see `check_body`)."""

    _check = staticmethod(check_body)


class IdempotencyKey(_CheckedStr):
    """A caller-chosen idempotency key (see `check_key`)."""

    _check = staticmethod(check_key)


class EventName(_CheckedStr):
    """The event a hook's e-mail is about (see `check_event`)."""

    _check = staticmethod(check_event)


class UserId(int):
    """A user id: an integer greater than 0."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.int_schema(gt=0, lt=2**63)  # fits the database's 64-bit ids
