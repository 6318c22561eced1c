"""Settings: un-prefixed names (EMAIL_BACKEND, SMTP_*, ADMIN_EMAIL, …) read from the env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from banktasks_testing import assert_retry_policy
from core import ConfigError, PluginSettings
from plugins.notifications import NotificationsSettings, TemporaryFailure
from plugins.notifications.sending import MAX_RETRIES, RETRY, retry_policy


def settings_of(app: Any) -> Any:
    return app.runtime.settings_for("notifications")


def test_defaults(notif_app: Any) -> None:
    s = settings_of(notif_app())
    assert s.email_backend == "file"
    assert s.admin_email == "admin@banking.com"
    assert s.default_from_email == "noreply@banking.com"
    assert (s.smtp_host, s.port, s.smtp_security, s.smtp_timeout) == ("localhost", 25, "none", 10)
    assert s.smtp_username is None and s.smtp_password is None
    assert (s.retry_backoff, s.retry_backoff_max) == (30, 900)


def test_unprefixed_names_are_read_from_the_environment(notif_app: Any, tmp_path: Path) -> None:
    s = settings_of(
        notif_app(
            EMAIL_BACKEND="SMTP",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT="2525",
            SMTP_USERNAME="mailer",
            SMTP_PASSWORD="pw",
            SMTP_SECURITY="starttls",
            SMTP_TIMEOUT="2.5",
            SMTP_CA_FILE=str(tmp_path / "ca.pem"),
            ADMIN_EMAIL="ops@bank.example",
            DEFAULT_FROM_EMAIL="Bank <noreply@bank.example>",
        )
    )
    assert s.email_backend == "smtp"
    assert (s.smtp_host, s.port, s.smtp_security, s.smtp_timeout) == (
        "127.0.0.1",
        2525,
        "starttls",
        2.5,
    )
    assert s.smtp_username == "mailer"
    assert s.smtp_password.get_secret_value() == "pw"
    assert "pw" not in repr(s) and "pw" not in str(s.model_dump())
    assert s.smtp_ca_file == tmp_path / "ca.pem"
    assert s.admin_email == "ops@bank.example"
    assert s.default_from_email == "Bank <noreply@bank.example>"


def test_prefixed_names_work_and_the_unprefixed_name_wins(notif_app: Any) -> None:
    s = settings_of(
        notif_app(
            NOTIFICATIONS_EMAIL_BACKEND="console",
            NOTIFICATIONS_ADMIN_EMAIL="prefixed@bank.example",
            ADMIN_EMAIL="plain@bank.example",
            NOTIFICATIONS_OUTBOX_DIR="/tmp/outbox-x",
            NOTIFICATIONS_RETRY_BACKOFF="2",
            NOTIFICATIONS_RETRY_BACKOFF_MAX="8",
        )
    )
    assert s.email_backend == "console"
    assert s.admin_email == "plain@bank.example"
    assert s.outbox_dir == Path("/tmp/outbox-x")
    assert (s.retry_backoff, s.retry_backoff_max) == (2, 8)


def test_toml_table_is_read(notif_app: Any, bt_env: dict[str, str]) -> None:
    Path(bt_env["BANKTASKS_CONFIG"]).write_text(
        '[plugins.notifications]\nemail_backend = "console"\nadmin_email = "toml@bank.example"\n'
    )
    s = settings_of(notif_app())
    assert (s.email_backend, s.admin_email) == ("console", "toml@bank.example")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ADMIN_EMAIL": "not-an-address"}, "ADMIN_EMAIL: expected an e-mail address"),
        ({"DEFAULT_FROM_EMAIL": "x@"}, "DEFAULT_FROM_EMAIL: expected an e-mail address"),
        ({"SMTP_SECURITY": "tls"}, "SMTP_SECURITY='tls': Input should be 'none', 'starttls'"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT='70000': Input should be less than or equal to 65535"),
        ({"SMTP_TIMEOUT": "0"}, "SMTP_TIMEOUT='0': Input should be greater than 0"),
        ({"SMTP_PASSWORD": "pw"}, "SMTP_PASSWORD is set but SMTP_USERNAME is not"),
        (
            {"SMTP_USERNAME": "u", "SMTP_PASSWORD": "pw", "SMTP_HOST": "mail.example.com"},
            "password would cross the network in clear text",
        ),
        (
            {"NOTIFICATIONS_RETRY_BACKOFF": "60", "NOTIFICATIONS_RETRY_BACKOFF_MAX": "30"},
            "NOTIFICATIONS_RETRY_BACKOFF_MAX (30) must be >= NOTIFICATIONS_RETRY_BACKOFF (60)",
        ),
        ({"NOTIFICATIONS_RETRY_BACKOFF_MAX": "1801"}, "less than or equal to 1800"),
    ],
)
def test_a_wrong_setting_stops_startup_with_one_clear_line(
    notif_app: Any, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        notif_app(**env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert "pw" not in str(info.value).replace("SMTP_PASSWORD", "")


def test_login_without_tls_is_allowed_to_a_loopback_relay(notif_app: Any) -> None:
    s = settings_of(notif_app(SMTP_USERNAME="u", SMTP_PASSWORD="pw", SMTP_HOST="127.0.0.1"))
    assert s.smtp_username == "u"


def test_retry_policy_comes_from_settings(notif_app: Any) -> None:
    s = settings_of(
        notif_app(NOTIFICATIONS_RETRY_BACKOFF="3", NOTIFICATIONS_RETRY_BACKOFF_MAX="20")
    )
    policy = retry_policy(s)
    assert (policy.max_retries, policy.backoff, policy.backoff_max) == (5, 3, 20)
    assert policy.retry_on == RETRY.retry_on and MAX_RETRIES == 5
    for retries, cap in enumerate([3, 6, 12, 20, 20]):
        waits = {policy.countdown(retries) for _ in range(300)}
        assert max(waits) <= cap and min(waits) >= 0
        assert max(waits) == cap, "full jitter reaches the cap"


def test_tasks_are_bound_with_the_declared_policy_and_queue(notif_app: Any) -> None:
    app = notif_app()
    for name in ("notifications.send_email_notification", "notifications.send_admin_email"):
        assert_retry_policy(
            app, name, max_retries=5, retry_on=(TemporaryFailure,), backoff=30, backoff_max=900
        )
        assert app.conf.task_routes[name] == {"queue": "notifications"}
        assert app.tasks[name].acks_late is True
        assert app.tasks[name].autoretry_for == RETRY.retry_on


def test_every_setting_of_this_plugin_has_a_description() -> None:
    own = set(NotificationsSettings.model_fields) - set(PluginSettings.model_fields)
    assert len(own) == 13
    missing = [name for name in own if not NotificationsSettings.model_fields[name].description]
    assert missing == []
