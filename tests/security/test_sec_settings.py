"""Settings that must be refused: malformed URLs, unknown plugins, thresholds of the wrong
type or absurd size. `banktasks` (and `celery -A core`) exits non-zero with exactly one
line on stderr that names the setting and says what was expected — no traceback, and no
secret echoed back."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Hunter2-s3cr3t"

BAD: list[tuple[dict[str, str], str, str]] = [
    # malformed URLs
    ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL", "expected redis://"),
    ({"REDIS_URL": "redis://"}, "REDIS_URL", "expected a host"),
    ({"REDIS_URL": "redis://localhost:99999/0"}, "REDIS_URL", "port"),
    ({"REDIS_URL": f"redis://:{SECRET}@redis:notaport/0"}, "REDIS_URL", "port"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL", "expected an SQLAlchemy URL"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL", "expected a sqlite://"),
    ({"DATABASE_URL": f"postgresql+psycopg://u:{SECRET}@db:x/bank"}, "DATABASE_URL", "int"),
    ({"SMTP_HOST": "smtp://mail.example.com"}, "SMTP_HOST", "expected a host name"),
    ({"SMTP_HOST": "mail.example.com:25"}, "SMTP_HOST", "expected a host name"),
    ({"SMTP_HOST": "mail example com"}, "SMTP_HOST", "expected a host name"),
    ({"SMTP_HOST": ""}, "SMTP_HOST", "at least 1 character"),
    ({"SMTP_PORT": "smtp"}, "SMTP_PORT", "valid integer"),
    ({"ADMIN_EMAIL": "root"}, "ADMIN_EMAIL", "expected an e-mail address"),
    ({"DEFAULT_FROM_EMAIL": "Bank\u2028Bcc: x@evil.test <no@bank.test>"}, "DEFAULT_FROM", "line"),
    # unknown plugins
    ({"BANKTASKS_PLUGINS": "fraud,frod"}, "BANKTASKS_PLUGINS", "installed plugins are"),
    ({"BANKTASKS_PLUGINS": "../plugins/export"}, "BANKTASKS_PLUGINS", "installed plugins are"),
    ({"BANKTASKS_DISABLE": "exprot"}, "BANKTASKS_DISABLE", "installed plugins are"),
    ({"EMAIL_BACKEND": "carrier-pigeon"}, "EMAIL_BACKEND", "channels there are"),
    # thresholds of the wrong type, out of range, or absurd
    ({"FRAUD_LARGE_AMOUNT": "abc"}, "FRAUD_LARGE_AMOUNT", "valid decimal"),
    ({"FRAUD_LARGE_AMOUNT": "NaN"}, "FRAUD_LARGE_AMOUNT", "finite number"),
    ({"FRAUD_LARGE_AMOUNT": "-5"}, "FRAUD_LARGE_AMOUNT", "greater than 0"),
    ({"FRAUD_LARGE_AMOUNT": "10000.001"}, "FRAUD_LARGE_AMOUNT", "two decimal places"),
    ({"FRAUD_LARGE_AMOUNT": "1e30"}, "FRAUD_LARGE_AMOUNT", "less than"),
    ({"FRAUD_LARGE_AMOUNT": "1e400"}, "FRAUD_LARGE_AMOUNT", "less than"),
    ({"FRAUD_VELOCITY_LIMIT": "-1"}, "FRAUD_VELOCITY_LIMIT", "greater than or equal to 1"),
    ({"FRAUD_VELOCITY_LIMIT": "ten"}, "FRAUD_VELOCITY_LIMIT", "valid integer"),
    ({"FRAUD_VELOCITY_LIMIT": str(10**30)}, "FRAUD_VELOCITY_LIMIT", "less than or equal"),
    ({"FRAUD_INITIAL_LOOKBACK_DAYS": str(10**11)}, "FRAUD_INITIAL_LOOKBACK_DAYS", "less than"),
    ({"FRAUD_UNRESOLVED_MAX_AGE_DAYS": str(10**13)}, "FRAUD_UNRESOLVED_MAX_AGE_DAYS", "less"),
    ({"FRAUD_ALERT_MIN_SEVERITY": "urgent"}, "FRAUD_ALERT_MIN_SEVERITY", "'low'"),
    ({"HEALTH_PENDING_MAX_AGE_HOURS": "0"}, "HEALTH_PENDING_MAX_AGE_HOURS", "greater than 0"),
    ({"HEALTH_PENDING_MAX_AGE_HOURS": str(10**17)}, "HEALTH_PENDING_MAX_AGE_HOURS", "less"),
    ({"HEALTH_CHECK_TIMEOUT_SECONDS": "nan"}, "HEALTH_CHECK_TIMEOUT_SECONDS", "300"),
    ({"EXPORT_MAX_DAYS": "x"}, "EXPORT_MAX_DAYS", "valid integer"),
    ({"EXPORT_MAX_DAYS": "0"}, "EXPORT_MAX_DAYS", "greater than 0"),
    ({"EXPORT_DIR": "/etc/passwd"}, "EXPORT_DIR", "not a directory"),
    ({"REPORTS_DIR": "/etc/passwd"}, "REPORTS_DIR", "not a directory"),
    ({"REPORTS_FORMATS": "pdf"}, "REPORTS_FORMATS", "available formats"),
    ({"REPORTS_FORMATS": "../csv"}, "REPORTS_FORMATS", "bad format name"),
    ({"FLOWER_PORT": "0"}, "FLOWER_PORT", "greater than or equal to 1"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "'DEBUG'"),
    # secrets are named, never echoed
    ({"FLOWER_BASIC_AUTH": SECRET}, "FLOWER_BASIC_AUTH", "expected user:password"),
    ({"SMTP_PASSWORD": SECRET}, "SMTP_PASSWORD", "SMTP_USERNAME is not"),
]


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def valkey_servers_under(path: Path) -> list[int]:
    """PIDs of valkey-server processes whose working directory is under `path`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if "valkey-server" not in (entry / "cmdline").read_text():
                continue
            if str(path) in os.readlink(entry / "cwd"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
def clean_env(bt_env: dict[str, str]) -> dict[str, str]:
    """The isolated banktasks environment (no REDIS_URL: the embedded default would start a
    broker, but start-up stops at the bad setting first)."""
    pythonpath = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    return {**os.environ, "PYTHONPATH": pythonpath}


def check_line(text: str, setting: str, says: str) -> None:
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text[-3000:]
    assert setting in text, text
    assert says.lower() in text.lower(), text
    assert SECRET not in text, "a secret was echoed back"


@pytest.mark.parametrize(
    ("variables", "setting", "says"),
    BAD,
    ids=[next(iter(v)) + f"-{i}" for i, (v, _s, _x) in enumerate(BAD)],
)
def test_bad_setting_is_one_clear_error(
    bt_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    setting: str,
    says: str,
) -> None:
    """Building the app (what every entry point does first) raises one ConfigError line."""
    from core import create_app
    from core.settings import load_settings

    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as refused:
        create_app(load_settings())
    check_line(str(refused.value), setting, says)


CLI_CASES: list[tuple[dict[str, str], str, str]] = [
    ({"REDIS_URL": f"redis://:{SECRET}@redis:notaport/0"}, "REDIS_URL", "port"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL", "expected a sqlite://"),
    ({"SMTP_HOST": "smtp://mail.example.com"}, "SMTP_HOST", "expected a host name"),
    ({"BANKTASKS_PLUGINS": "fraud,frod"}, "BANKTASKS_PLUGINS", "installed plugins are"),
    ({"BANKTASKS_DISABLE": "exprot"}, "BANKTASKS_DISABLE", "installed plugins are"),
    ({"FRAUD_LARGE_AMOUNT": "abc"}, "FRAUD_LARGE_AMOUNT", "valid decimal"),
    ({"FRAUD_VELOCITY_LIMIT": "-1"}, "FRAUD_VELOCITY_LIMIT", "greater than or equal to 1"),
    ({"HEALTH_PENDING_MAX_AGE_HOURS": "0"}, "HEALTH_PENDING_MAX_AGE_HOURS", "greater than 0"),
    ({"EXPORT_MAX_DAYS": "x"}, "EXPORT_MAX_DAYS", "valid integer"),
    ({"REPORTS_FORMATS": "pdf"}, "REPORTS_FORMATS", "available formats"),
]
"""The issue's examples, each through the real command (the rest are checked in-process)."""


def test_banktasks_exits_with_one_line_on_stderr(clean_env: dict[str, str], tmp_path: Path):
    """`banktasks plugins` with each bad setting of the issue's list: exit 2, one line on
    stderr naming the setting and what was expected, no traceback, no broker started."""
    cli = [sys.executable, "-m", "core.cli", "plugins"]

    def attempt(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return run(cli, {**clean_env, **variables}, tmp_path)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(attempt, [variables for variables, _s, _x in CLI_CASES]))
    failures = []
    for (variables, setting, says), result in zip(CLI_CASES, results, strict=True):
        try:
            assert result.returncode == 2, result.returncode
            assert result.stderr.startswith("banktasks: configuration error: ")
            check_line(result.stderr, setting, says)
            assert SECRET not in result.stdout
        except AssertionError as exc:
            failures.append(f"{variables}: {exc}")
    assert not failures, "\n".join(failures)
    assert not valkey_servers_under(tmp_path), "start-up went on and started a broker"


def test_the_good_settings_still_start(bt_env: dict[str, str], monkeypatch) -> None:
    from core import create_app
    from core.settings import load_settings

    good = {
        "FRAUD_LARGE_AMOUNT": "9999.99",
        "HEALTH_PENDING_MAX_AGE_HOURS": "48",
        "EXPORT_MAX_DAYS": "31",
        "REPORTS_FORMATS": "json,html",
    }
    for key, value in good.items():
        monkeypatch.setenv(key, value)
    for host in ["smtp.example.com", "127.0.0.1", "::1", "localhost", "mail-relay_1.internal."]:
        monkeypatch.setenv("SMTP_HOST", host)
        app = create_app(load_settings())
        assert app.runtime.settings_for("notifications").smtp_host == host


@pytest.mark.parametrize("app_module", ["core", "config"])
@pytest.mark.parametrize(
    ("variables", "setting"),
    [
        ({"FRAUD_LARGE_AMOUNT": "abc"}, "FRAUD_LARGE_AMOUNT"),
        ({"REDIS_URL": f"redis://:{SECRET}@redis:x/0"}, "REDIS_URL"),
    ],
)
def test_celery_worker_with_a_bad_setting_says_one_line(
    clean_env: dict[str, str], tmp_path: Path, app_module: str, variables: dict, setting: str
) -> None:
    """`celery -A core worker` (and the seed's `-A config`) print the same single line as
    `banktasks`, exit 2, instead of Celery's "Unable to load celery application" traceback."""
    result = run(
        [sys.executable, "-m", "celery", "-A", app_module, "worker", "-l", "INFO"],
        {**clean_env, **variables},
        tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("banktasks: configuration error: ")
    check_line(result.stderr, setting, "")
    assert not valkey_servers_under(tmp_path)
