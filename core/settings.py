"""Core settings and per-plugin settings (pydantic-settings).

Sources, highest priority first: the environment, then `.env`, then the TOML
file named by `BANKTASKS_CONFIG` (default `banktasks.toml`). Core settings are
top-level TOML keys; a plugin's settings come from `<PLUGIN>_<FIELD>` variables
or a `[plugins.<name>]` table.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.errors import ConfigError
from core.logging import SECRET_KEY, URL_PASSWORD


def split_commas(value: Any) -> Any:
    """`"a, b,c"` → `["a", "b", "c"]`; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str] | None, NoDecode, BeforeValidator(split_commas)]
"""A setting given as a comma-separated list (`ACME_RULES=first,second`)."""


class DictSource(PydanticBaseSettingsSource):
    """A settings source that reads a plain dict (one table of the TOML file)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = {k.lower(): v for k, v in data.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        known = set(self.settings_cls.model_fields)
        unknown = sorted(set(self._data) - known)
        if unknown:
            raise ConfigError(
                f"{self.settings_cls.__name__}: unknown key(s) {', '.join(unknown)} in the TOML "
                f"file; expected some of: {', '.join(sorted(known))}"
            )
        return dict(self._data)


class _LayeredSettings(BaseSettings):
    """BaseSettings whose sources are env, then .env, then a TOML table given at build time."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        table = getattr(settings_cls, "__banktasks_toml__", {})
        return (init_settings, env_settings, dotenv_settings, DictSource(settings_cls, table))


class Settings(_LayeredSettings):
    """Settings of the core: broker, database, environment, plugin selection, logging."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(
        None,
        description="Broker and result backend URL (redis://, rediss://, unix://); unset: "
        "the embedded Valkey of the default `broker` plugin (development only)",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default the SQLite file <BANKTASKS_VAR_DIR>/banking.db"
    )
    banktasks_env: Literal["development", "production"] = Field(
        "development", description="`production` refuses unsafe defaults (no REDIS_URL, …)"
    )
    banktasks_plugins: CommaList = Field(
        None, description="Allow-list of installed plugins to load (comma list); unset: all"
    )
    banktasks_disable: CommaList = Field(
        None, description="Plugins to block (comma list), default plugins included"
    )
    banktasks_config: str = Field("banktasks.toml", description="Path of the TOML settings file")
    banktasks_var_dir: Path = Field(
        Path("var"), description="Folder of local state: embedded broker, SQLite, outputs"
    )
    log_format: Literal["console", "json"] = Field("console", description="Log line format")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Lowest level logged"
    )
    result_expires_seconds: int = Field(
        86400, gt=0, description="How long task results stay in the result backend"
    )
    banktasks_task_events: bool = Field(
        False, description="Send Celery task events always (Flower turns them on by itself)"
    )
    broker_visibility_timeout: int | None = Field(
        None,
        ge=10,
        description="seconds before the broker redelivers an unacknowledged message "
        "(Redis transport); unset: computed from the retry policies, at least 3600",
    )

    _plugin_tables: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss", "valkey", "valkeys", "unix"}:
            raise ValueError("expected redis://[:password@]host:port/db, rediss://… or unix://…")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("expected a host, e.g. redis://127.0.0.1:6379/0")
        try:
            parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ValueError(f"bad port ({exc})") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "expected an SQLAlchemy URL such as postgresql+psycopg://user:pw@host/db "
                "or sqlite:///var/banking.db"
            ) from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError("expected a sqlite:// or postgresql+psycopg:// URL")
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.banktasks_env == "production" and not self.redis_url:
            raise ValueError(
                "REDIS_URL is required when BANKTASKS_ENV=production "
                "(e.g. redis://:password@redis-host:6379/0)"
            )
        return self

    @property
    def is_production(self) -> bool:
        """True when `BANKTASKS_ENV=production`."""
        return self.banktasks_env == "production"

    @property
    def var_dir(self) -> Path:
        """Directory for the embedded broker, the SQLite file and the files plugins write."""
        return self.banktasks_var_dir

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to the SQLite file under `var/`."""
        return self.database_url or f"sqlite:///{self.var_dir / 'banking.db'}"


class PluginSettings(_LayeredSettings):
    """Base class of a plugin's settings model.

    Fields are read from `<PLUGIN>_<FIELD>` environment variables, `.env`, or the
    `[plugins.<name>]` table of the TOML file. Every plugin gets `schedule`:
    `<PLUGIN>_SCHEDULE="0 2 * * *"` overrides its beat schedule, `off` disables it.
    """

    model_config = SettingsConfigDict(extra="ignore")

    schedule: str | None = Field(
        None,
        description="Cron expression (5 fields, UTC) that replaces the plugin's beat schedule; "
        "`off` switches it off",
    )


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read the TOML config file; a missing file is an empty config."""
    file = Path(path)
    if not file.exists():
        return {}
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"BANKTASKS_CONFIG={file}: not valid TOML ({exc})") from None


def _one_line(exc: ValidationError, prefix: str = "", model: Any = None) -> str:
    """Turn a pydantic ValidationError about settings into one readable line per error.

    The variable named is the one an operator sets: the field's alias when it has
    one (its alias), else `<prefix><FIELD>`.
    """
    fields = getattr(model, "model_fields", {}) if model is not None else {}
    lines = []
    for err in exc.errors():
        loc = "_".join(str(p) for p in err["loc"]) if err["loc"] else ""
        name = f"{prefix}{loc}".upper() if loc else prefix.rstrip("_").upper() or "settings"
        first = str(err["loc"][0]) if err["loc"] else ""
        field = fields.get(first)
        aliases = {a for f in fields.values() if (a := _env_alias(f))}
        if first in aliases:  # pydantic reports an aliased field by the alias it read
            name = first.upper()
        elif field is not None and (alias := _env_alias(field)):
            name = alias.upper()
        value = err.get("input")
        secret = SECRET_KEY.search(name) is not None  # e.g. a *_PASSWORD: never echoed
        shown = "" if isinstance(value, dict) or secret else f"={value!r}"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(URL_PASSWORD.sub(r"\1***@", f"{name}{shown}: {msg}"))  # URL passwords
    return "; ".join(lines)


def _env_alias(field: FieldInfo) -> str | None:
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias
    choices = getattr(alias, "choices", None)
    if choices and isinstance(choices[0], str):
        return str(choices[0])
    return None


def load_settings(**overrides: Any) -> Settings:
    """Build core settings from the environment, `.env` and the TOML file.

    Raises ConfigError with one clear line when a setting is wrong.
    """
    config_path = overrides.get("banktasks_config") or os.environ.get(
        "BANKTASKS_CONFIG", "banktasks.toml"
    )
    data = read_toml(config_path)
    top = {k: v for k, v in data.items() if k != "plugins"}
    cls = type("Settings", (Settings,), {"__banktasks_toml__": top})
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    settings._plugin_tables = data.get("plugins", {})
    return settings


def load_plugin_settings(
    name: str, model: type[PluginSettings], settings: Settings
) -> PluginSettings:
    """Build one plugin's settings model with `<NAME>_` env prefix and its TOML table."""
    if not issubclass(model, PluginSettings):
        raise ConfigError(
            f"plugin {name!r}: register_settings() must return a subclass of "
            f"core.PluginSettings, got {model!r}"
        )
    table = settings._plugin_tables.get(name, {})
    config = SettingsConfigDict(
        env_prefix=f"{name.upper()}_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )
    built = type(
        model.__name__,
        (model,),
        {
            "model_config": {**model.model_config, **config},
            "__banktasks_toml__": table,
        },
    )
    try:
        return built()
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, prefix=f"{name}_", model=model)) from None


__all__ = [
    "BaseModel",
    "CommaList",
    "ConfigError",
    "PluginSettings",
    "Settings",
    "load_plugin_settings",
    "load_settings",
    "read_toml",
]
