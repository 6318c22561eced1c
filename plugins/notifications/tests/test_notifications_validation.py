"""Arguments are checked from the type hints in the caller (nothing queued) and the worker."""

from __future__ import annotations

from typing import Any

import pytest

from core import TaskArgumentError
from plugins.notifications import Message, send_admin_email, send_email_notification
from plugins.notifications.tests.helpers import outbox_rows, queued
from plugins.notifications.validation import MAX_BODY_BYTES, MAX_SUBJECT, check_address


@pytest.mark.parametrize(
    "subject",
    [
        "Hello\r\nBcc: victim@example.com",
        "Hello\nBcc: victim@example.com",
        "Hello\rBcc: victim@example.com",
        "Hello\x00",
    ],
)
def test_header_injection_in_subject_is_refused_in_the_caller(notif_app: Any, subject: str) -> None:
    app = notif_app()
    with pytest.raises(TaskArgumentError, match="subject") as info:
        send_email_notification.delay(user_id=1, subject=subject, message="Body")
    assert "line break" in str(info.value) or "control" in str(info.value)
    assert queued(app) == []
    with pytest.raises(TaskArgumentError):
        send_email_notification(user_id=1, subject=subject, message="Body")
    assert outbox_rows(app) == []


@pytest.mark.parametrize(
    ("subject", "ok"),
    [("x" * (MAX_SUBJECT - 1), True), ("x" * MAX_SUBJECT, True), ("x" * (MAX_SUBJECT + 1), False)],
)
def test_subject_length_boundary(notif_app: Any, subject: str, ok: bool) -> None:
    notif_app()
    if ok:
        assert send_email_notification(user_id=1, subject=subject, message="b")["status"] == "sent"
    else:
        with pytest.raises(TaskArgumentError, match="999 characters; at most 998"):
            send_email_notification(user_id=1, subject=subject, message="b")


@pytest.mark.parametrize("subject", ["", "   ", "\t"])
def test_blank_subject_is_refused(notif_app: Any, subject: str) -> None:
    notif_app()
    with pytest.raises(TaskArgumentError, match="subject is empty"):
        send_email_notification(user_id=1, subject=subject, message="Body")


@pytest.mark.parametrize(
    ("size", "ok"),
    [(MAX_BODY_BYTES - 1, True), (MAX_BODY_BYTES, True), (MAX_BODY_BYTES + 1, False)],
)
def test_body_size_boundary_in_utf8_bytes(notif_app: Any, size: int, ok: bool) -> None:
    app = notif_app()
    body = "é" * (size // 2) + "a" * (size % 2)  # two bytes per é
    assert len(body.encode()) == size
    if ok:
        send_email_notification(user_id=1, subject="Big", message=body, idempotency_key=str(size))
        assert len(outbox_rows(app)) == 1
    else:
        with pytest.raises(TaskArgumentError, match="message"):
            send_email_notification.delay(user_id=1, subject="Big", message=body)
        with pytest.raises(TaskArgumentError, match="html_message"):
            send_email_notification.delay(user_id=1, subject="Big", message="ok", html_message=body)
        assert queued(app) == []


@pytest.mark.parametrize(("user_id", "ok"), [(-1, False), (0, False), (1, True)])
def test_user_id_must_be_positive(notif_app: Any, user_id: int, ok: bool) -> None:
    app = notif_app()
    if ok:
        send_email_notification.delay(user_id=user_id, subject="Hi", message="Body")
        assert [m["kwargs"]["user_id"] for m in queued(app)] == [1]
    else:
        with pytest.raises(TaskArgumentError, match="user_id"):
            send_email_notification.delay(user_id=user_id, subject="Hi", message="Body")
        assert queued(app) == []


def test_missing_and_unexpected_arguments_are_named(notif_app: Any) -> None:
    notif_app()
    with pytest.raises(TaskArgumentError, match="missing a required argument: 'message'"):
        send_email_notification.delay(user_id=1, subject="Hi")
    with pytest.raises(TaskArgumentError, match="unexpected keyword argument 'cc'"):
        send_admin_email.delay(subject="Hi", message="Body", cc="x@example.com")


@pytest.mark.parametrize(("key", "ok"), [("k" * 200, True), ("k" * 201, False), ("a\nb", False)])
def test_idempotency_key_bounds(notif_app: Any, key: str, ok: bool) -> None:
    notif_app()
    if ok:
        result = send_admin_email(subject="Hi", message="Body", idempotency_key=key)
        assert result["idempotency_key"] == key
    else:
        with pytest.raises(TaskArgumentError, match="idempotency key"):
            send_admin_email(subject="Hi", message="Body", idempotency_key=key)


def test_message_refuses_header_injection_in_every_header() -> None:
    base: dict[str, Any] = {"to": "a@example.com", "from_": "b@example.com", "subject": "s"}
    with pytest.raises(ValueError, match="line break"):
        Message(**{**base, "to": "a@example.com\r\nBcc: c@example.com"}, text="t")
    with pytest.raises(ValueError, match="line break"):
        Message(**base, text="t", headers={"X-Tag": "a\nBcc: c@example.com"})
    with pytest.raises(ValueError, match="not allowed"):
        Message(**base, text="t", headers={"Bcc": "c@example.com"})
    with pytest.raises(ValueError, match="not allowed"):
        Message(**base, text="t", headers={"X Bad": "v"})


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("admin@banking.com", True),
        ("Bank Ops <ops@bank.example>", True),
        ("root@localhost", True),
        ("first.last+tag@sub.example.co.uk", True),
        ("no-at-sign", False),
        ("two@@example.com", False),
        ("a@-bad-.example", False),
        ("x" * 65 + "@example.com", False),
        ("a@example.com\r\nBcc: b@example.com", False),
    ],
)
def test_address_check(address: str, ok: bool) -> None:
    if ok:
        assert check_address(address) == address
    else:
        with pytest.raises(ValueError):
            check_address(address)
