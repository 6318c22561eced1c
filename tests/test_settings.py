"""Settings: environment, .env and TOML layering, validation with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import ConfigError, PluginSettings
from core.settings import load_plugin_settings, load_settings


def test_defaults_use_embedded_broker_and_sqlite(bt_env):
    settings = load_settings()
    assert settings.redis_url is None
    assert settings.banktasks_env == "development"
    assert settings.sqlalchemy_url.startswith("sqlite:///")
    assert settings.log_format == "console"


def test_comma_lists_from_env(bt_env, monkeypatch):
    monkeypatch.setenv("BANKTASKS_PLUGINS", "fraud, health")
    monkeypatch.setenv("BANKTASKS_DISABLE", "export")
    settings = load_settings()
    assert settings.banktasks_plugins == ["fraud", "health"]
    assert settings.banktasks_disable == ["export"]


def test_toml_then_env_priority(bt_env, monkeypatch):
    Path(bt_env["BANKTASKS_CONFIG"]).write_text(
        'log_level = "debug"\nresult_expires_seconds = 60\n[plugins.acme]\nthreshold = 7\n'
    )
    monkeypatch.setenv("RESULT_EXPIRES_SECONDS", "70")
    settings = load_settings()
    assert settings.log_level == "DEBUG"  # from TOML
    assert settings.result_expires_seconds == 70  # env beats TOML


def test_dotenv_between_env_and_toml(bt_env, monkeypatch):
    Path(bt_env["BANKTASKS_CONFIG"]).write_text("result_expires_seconds = 60\n")
    Path(".env").write_text("RESULT_EXPIRES_SECONDS=65\n")
    assert load_settings().result_expires_seconds == 65
    monkeypatch.setenv("RESULT_EXPIRES_SECONDS", "70")
    assert load_settings().result_expires_seconds == 70


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("REDIS_URL", "http://localhost", "REDIS_URL='http://localhost'"),
        ("REDIS_URL", "redis://:pw@host:notaport/0", "REDIS_URL="),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL='mysql://x@y/z'"),
        ("RESULT_EXPIRES_SECONDS", "-1", "RESULT_EXPIRES_SECONDS='-1'"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml'"),
        ("BANKTASKS_ENV", "staging", "BANKTASKS_ENV='staging'"),
    ],
)
def test_bad_setting_is_one_clear_line(bt_env, monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "Traceback" not in message


def test_production_requires_redis_url(bt_env, monkeypatch):
    monkeypatch.setenv("BANKTASKS_ENV", "production")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:long-secret-phrase")
    with pytest.raises(ConfigError, match="REDIS_URL is required"):
        load_settings()


def test_production_refuses_default_flower_auth(make_app, monkeypatch):
    # FLOWER_* belong to the default `flower` plugin, which checks them when the app is built
    # (the other production rules have their tests in tests/security/test_sec_production.py;
    # make_app creates tables, so this one keeps its SQLite file, allowed by the opt-out)
    redis_url = "redis://:broker-password-1@redis:6379/0"
    monkeypatch.setenv("BANKTASKS_ENV", "production")
    monkeypatch.setenv("BANKTASKS_ALLOW_SQLITE_IN_PRODUCTION", "true")
    monkeypatch.setenv("REDIS_URL", redis_url)
    with pytest.raises(ConfigError, match="FLOWER_BASIC_AUTH=admin:admin is refused"):
        make_app(plugins=[], redis_url=redis_url)
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:long-secret-phrase")
    app = make_app(plugins=[], redis_url=redis_url)
    assert app.runtime.settings.is_production


def test_development_accepts_default_flower_auth(make_app):
    app = make_app(plugins=[])
    assert app.runtime.settings_for("flower").basic_auth == "admin:admin"
    assert app.runtime.settings_for("flower").port == 5555


def test_bad_flower_setting_is_one_clear_line(make_app, monkeypatch):
    monkeypatch.setenv("FLOWER_PORT", "99999")
    with pytest.raises(ConfigError, match="FLOWER_PORT='99999'"):
        make_app(plugins=[])


def test_bad_toml_is_a_config_error(bt_env):
    Path(bt_env["BANKTASKS_CONFIG"]).write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


class AcmeSettings(PluginSettings):
    threshold: int = 5
    label: str = "x"


def test_plugin_settings_from_prefixed_env_and_toml(bt_env, monkeypatch):
    Path(bt_env["BANKTASKS_CONFIG"]).write_text('[plugins.acme]\nthreshold = 7\nlabel = "t"\n')
    settings = load_settings()
    acme = load_plugin_settings("acme", AcmeSettings, settings)
    assert (acme.threshold, acme.label) == (7, "t")
    monkeypatch.setenv("ACME_THRESHOLD", "9")
    acme = load_plugin_settings("acme", AcmeSettings, load_settings())
    assert (acme.threshold, acme.label) == (9, "t")


def test_plugin_setting_of_wrong_type_names_the_variable(bt_env, monkeypatch):
    monkeypatch.setenv("ACME_THRESHOLD", "lots")
    with pytest.raises(ConfigError) as info:
        load_plugin_settings("acme", AcmeSettings, load_settings())
    assert "ACME_THRESHOLD='lots'" in str(info.value)
    assert "integer" in str(info.value)


def test_unknown_key_in_plugin_table_is_refused(bt_env):
    Path(bt_env["BANKTASKS_CONFIG"]).write_text("[plugins.acme]\ntreshold = 7\n")
    with pytest.raises(ConfigError, match=r"unknown key.*treshold"):
        load_plugin_settings("acme", AcmeSettings, load_settings())


def test_plugin_settings_must_subclass_plugin_settings(bt_env):
    from pydantic import BaseModel

    class Loose(BaseModel):
        x: int = 1

    with pytest.raises(ConfigError, match=r"subclass of core\.PluginSettings"):
        load_plugin_settings("acme", Loose, load_settings())  # type: ignore[arg-type]


def test_an_empty_var_dir_is_the_default_not_the_working_directory(bt_env, monkeypatch):
    monkeypatch.setenv("BANKTASKS_VAR_DIR", "")
    assert load_settings().var_dir == Path("var")
