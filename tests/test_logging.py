"""Structured logs: redaction of PII and secrets, JSON output, task context."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from core.logging import configure_logging, redact_text, redact_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe@example.com now", "mail j***@example.com now"),
        ("account 400000001234 moved", "account ****1234 moved"),
        ("iban DE89370400440532013000", "iban ****3000"),
        ("redis://:s3cr3t@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql+psycopg://bank:pw@db/bank", "postgresql+psycopg://bank:***@db/bank"),
        ("amount 10000.01 on 2024-01-31", "amount 10000.01 on 2024-01-31"),
        ("order 1234567", "order 1234567"),
    ],
)
def test_redact_text(text, expected):
    assert redact_text(text) == expected


def test_secret_keys_are_dropped_and_nested_values_redacted():
    event = {
        "password": "hunter2",
        "smtp_password": "x",
        "Authorization": "Bearer abc",
        "api_key": "k",
        "nested": {"token": "t", "to": "bob@bank.com"},
        "ids": ["400000009999"],
        "task_id": "12345678-aaaa",
    }
    redacted = {k: redact_value(k, v) for k, v in event.items()}
    assert redacted["password"] == redacted["smtp_password"] == "[REDACTED]"
    assert redacted["Authorization"] == redacted["api_key"] == "[REDACTED]"
    assert redacted["nested"] == {"token": "[REDACTED]", "to": "b***@bank.com"}
    assert redacted["ids"] == ["****9999"]
    assert redacted["task_id"] == "12345678-aaaa"


def test_json_logs_from_structlog_and_stdlib_are_redacted():
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    structlog.get_logger("t").info("sent", to="ann@example.org", password="pw")
    logging.getLogger("celery.worker").warning("connected to redis://:pw@host:1/0")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "sent"
    assert lines[0]["to"] == "a***@example.org"
    assert lines[0]["password"] == "[REDACTED]"
    assert lines[0]["level"] == "info"
    assert lines[1]["event"] == "connected to redis://:***@host:1/0"
    assert lines[1]["logger"] == "celery.worker"
    assert "ann@example.org" not in stream.getvalue()


def test_context_variables_are_merged():
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    with structlog.contextvars.bound_contextvars(task_id="abc", plugin="fraud", retries=0):
        structlog.get_logger().info("inside")
    line = json.loads(stream.getvalue())
    assert (line["task_id"], line["plugin"], line["retries"]) == ("abc", "fraud", 0)
