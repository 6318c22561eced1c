"""Finding 6: with `BANKTASKS_ENV=production`, weak settings are refused at start-up, each with
one line that names the variable and says what to change: weak Flower logins, a password-less
Redis on a non-loopback host, SQLite, a missing DATABASE_URL. The two that an operator may
need (SQLite on a single machine, Redis behind a private network) have a named opt-out, and
every start that relies on one logs a WARNING naming it. Development accepts all of them."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from core import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FLOWER_PASSWORD = "Vq7-tR2m-Xk9p-Lw4z"
STRONG = {
    "BANKTASKS_ENV": "production",
    "REDIS_URL": "redis://:Broker-pw-0f3a9c1e7b@redis.internal:6379/0",
    "DATABASE_URL": "postgresql+psycopg://bank:Db-pw-5e1d2c9a4f@db.internal:5432/bank",
    "FLOWER_BASIC_AUTH": f"ops:{FLOWER_PASSWORD}",
}
"""Production settings that pass every rule (nothing here is contacted: building the app
connects to neither the broker nor the database)."""

ALLOW_SQLITE = "BANKTASKS_ALLOW_SQLITE_IN_PRODUCTION"
ALLOW_REDIS = "BANKTASKS_ALLOW_UNAUTHENTICATED_REDIS"


def build(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str | None]) -> Any:
    """Build the app (default plugins only) from STRONG updated with `variables` (None:
    unset), as every entry point does."""
    from core import create_app, load_settings

    for key, value in {**STRONG, **variables}.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    return create_app(load_settings(), plugins=[])


def refusal(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str | None]) -> str:
    with pytest.raises(ConfigError) as refused:
        build(monkeypatch, variables)
    return str(refused.value)


def check_line(text: str, names: list[str], says: str, secret: str | None = None) -> None:
    """One line, naming every variable in `names`, saying `says`, echoing no secret."""
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text
    for name in names:
        assert name in text, text
    assert says.lower() in text.lower(), text
    if secret and len(secret) >= 3:
        assert secret not in text, f"the password was echoed: {text}"


def opt_out_warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("log_level") == "warning" and e.get("setting")]


def test_strong_production_settings_start_without_warnings(bt_env, monkeypatch):
    with capture_logs() as logs:
        app = build(monkeypatch, {})
    assert app.runtime.settings.is_production
    assert opt_out_warnings(logs) == []


WEAK_FLOWER: list[tuple[str, str, str | None]] = [
    ("a:b", "shorter than 12 characters", "b"),
    ("admin:password1", "shorter than 12 characters", "password1"),
    ("ops:short-pw-1", "shorter than 12 characters", "short-pw-1"),
    ("operations-lead:operations-lead", "same as the user", None),
    ("ops:Password1234", "common password", "Password1234"),
    ("ops:qwertyuiop123", "common password", "qwertyuiop123"),
    (f"ops:{FLOWER_PASSWORD},guest:guest", "pair 2", "guest"),
    ("admin:admin", "FLOWER_BASIC_AUTH=admin:admin is refused", None),
]


@pytest.mark.parametrize(("basic_auth", "says", "secret"), WEAK_FLOWER)
def test_weak_flower_login_is_refused(bt_env, monkeypatch, basic_auth, says, secret):
    text = refusal(monkeypatch, {"FLOWER_BASIC_AUTH": basic_auth})
    check_line(text, ["FLOWER_BASIC_AUTH", "BANKTASKS_ENV=production"], says, secret)
    if basic_auth != "admin:admin":
        assert "at least 12" in text, "the line says what a strong password is"


UNAUTHENTICATED_REDIS = [
    "redis://redis.internal:6379/0",
    "redis://10.1.2.3:6379/0",
    "redis://[2001:db8::5]:6379/0",
    "redis://0.0.0.0:6379/0",
    "redis://bank@redis.internal:6379/0",
    "redis://:@redis.internal:6379/0",
    "rediss://redis.example.com:6380/0",
    "valkey://redis.internal:6379/0",
]


@pytest.mark.parametrize("url", UNAUTHENTICATED_REDIS)
def test_passwordless_redis_on_a_network_host_is_refused(bt_env, monkeypatch, url):
    text = refusal(monkeypatch, {"REDIS_URL": url})
    check_line(text, ["REDIS_URL", "BANKTASKS_ENV=production", ALLOW_REDIS], "no password")


LOOPBACK_REDIS = [
    "redis://127.0.0.1:6379/0",
    "redis://127.8.9.10:6379/0",
    "redis://localhost:6379/0",
    "redis://LOCALHOST:6379/0",
    "redis://[::1]:6379/0",
    "unix:///run/valkey/valkey.sock",
]


@pytest.mark.parametrize("url", LOOPBACK_REDIS)
def test_passwordless_redis_on_loopback_is_accepted(bt_env, monkeypatch, url):
    with capture_logs() as logs:
        app = build(monkeypatch, {"REDIS_URL": url})
    assert app.runtime.settings.redis_url == url
    assert opt_out_warnings(logs) == []


@pytest.mark.parametrize(
    ("variables", "names", "says"),
    [
        ({"DATABASE_URL": "sqlite:////srv/bank.db"}, ["DATABASE_URL", ALLOW_SQLITE], "sqlite"),
        ({"DATABASE_URL": "sqlite://"}, ["DATABASE_URL", ALLOW_SQLITE], "sqlite"),
        ({"DATABASE_URL": None}, ["DATABASE_URL"], "is required"),
        ({"DATABASE_URL": None, ALLOW_SQLITE: "true"}, ["DATABASE_URL"], "is required"),
        ({"REDIS_URL": None}, ["REDIS_URL"], "is required"),
    ],
)
def test_sqlite_and_missing_urls_are_refused(bt_env, monkeypatch, variables, names, says):
    text = refusal(monkeypatch, variables)
    check_line(text, [*names, "BANKTASKS_ENV=production"], says)


def test_every_problem_is_named_in_the_one_line(bt_env, monkeypatch):
    text = refusal(
        monkeypatch,
        {"REDIS_URL": "redis://redis.internal:6379/0", "DATABASE_URL": "sqlite:////srv/b.db"},
    )
    check_line(text, ["REDIS_URL", "DATABASE_URL", ALLOW_REDIS, ALLOW_SQLITE], "no password")


@pytest.mark.parametrize(
    ("variables", "setting"),
    [
        ({"DATABASE_URL": "sqlite:////srv/bank/banking.db", ALLOW_SQLITE: "true"}, ALLOW_SQLITE),
        ({"REDIS_URL": "redis://redis.internal:6379/0", ALLOW_REDIS: "true"}, ALLOW_REDIS),
    ],
)
def test_opt_out_is_accepted_and_warned_about_at_every_start(
    bt_env, monkeypatch, variables, setting
):
    for _start in range(2):
        with capture_logs() as logs:
            app = build(monkeypatch, variables)
        assert app.runtime.settings.is_production
        warned = opt_out_warnings(logs)
        assert [w["setting"] for w in warned] == [setting], logs
        assert warned[0]["log_level"] == "warning"


def test_an_unneeded_opt_out_warns_about_nothing(bt_env, monkeypatch):
    with capture_logs() as logs:
        build(monkeypatch, {ALLOW_SQLITE: "true", ALLOW_REDIS: "true"})
    assert opt_out_warnings(logs) == []


def test_development_accepts_all_of_it_without_a_word(bt_env, monkeypatch):
    with capture_logs() as logs:
        app = build(
            monkeypatch,
            {
                "BANKTASKS_ENV": "development",
                "FLOWER_BASIC_AUTH": "a:b",
                "REDIS_URL": "redis://redis.internal:6379/0",
                "DATABASE_URL": None,
            },
        )
    assert not app.runtime.settings.is_production
    assert opt_out_warnings(logs) == []


CLI_CASES: list[tuple[dict[str, str | None], str, str]] = [
    ({"FLOWER_BASIC_AUTH": "admin:password1"}, "FLOWER_BASIC_AUTH", "at least 12"),
    ({"REDIS_URL": "redis://redis.internal:6379/0"}, "REDIS_URL", ALLOW_REDIS),
    ({"DATABASE_URL": "sqlite:////srv/bank/banking.db"}, "DATABASE_URL", ALLOW_SQLITE),
    ({"DATABASE_URL": None}, "DATABASE_URL", "is required"),
]


def subprocess_env(variables: dict[str, str | None]) -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    env = {**os.environ, **STRONG, "PYTHONPATH": pythonpath}
    for key, value in variables.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def test_banktasks_refuses_with_one_line_and_warns_at_start(bt_env, tmp_path):
    """The real command: each weak setting is exit 2 and one line on stderr; with the
    opt-outs it starts, and its output carries the warnings."""
    cli = [sys.executable, "-m", "core.cli", "plugins"]
    cases = [v for v, _n, _s in CLI_CASES] + [
        {
            "DATABASE_URL": "sqlite:////srv/bank/banking.db",
            "REDIS_URL": "redis://redis.internal:6379/0",
            ALLOW_SQLITE: "true",
            ALLOW_REDIS: "true",
        }
    ]

    def attempt(variables: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli,
            env=subprocess_env(variables),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        *refused, started = pool.map(attempt, cases)
    for (_variables, name, says), result in zip(CLI_CASES, refused, strict=True):
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert result.stderr.startswith("banktasks: configuration error: ")
        check_line(result.stderr, [name], says, "password1")
    assert started.returncode == 0, started.stderr
    output = started.stdout + started.stderr
    for setting in (ALLOW_SQLITE, ALLOW_REDIS):
        assert setting in output and "warning" in output.lower(), output
