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
from core.logging import SECRET_KEY, get_logger, mask_url_password
from core.mapping import DataMapping
from core.timelimits import TimeLimits
from core.timelimits import parse_overrides as parse_time_limit_overrides
from core.validators import is_loopback


def split_commas(value: Any) -> Any:
    """`"a, b,c"` → `["a", "b", "c"]`; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str] | None, NoDecode, BeforeValidator(split_commas)]
"""A setting given as a comma-separated list (`ACME_RULES=first,second`)."""

TimeLimitOverrides = Annotated[
    dict[str, TimeLimits], NoDecode, BeforeValidator(parse_time_limit_overrides)
]
"""BANKTASKS_TIME_LIMITS: `task=soft/hard` seconds, comma-separated."""


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
    data_database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the bank's database that DATA_MAPPING reads "
        "(read-only); unset: DATABASE_URL's database",
    )
    database_schema: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="PostgreSQL schema of banktasks' own tables (alerts, outbox, exports, "
        "reports, dead letters), made by `banktasks db init`; unset: the connection's default",
    )
    data_mapping: DataMapping | None = Field(
        None,
        description="Read users, accounts and transactions from the bank's own tables: a "
        "`[data_mapping]` TOML table or JSON (see docs/existing-database.md); banktasks never "
        "writes them; unset: banktasks' own `users`, `accounts`, `transactions`",
    )
    banktasks_env: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses weak settings: no REDIS_URL, a password-less Redis "
        "on a network host, SQLite or no DATABASE_URL, weak Flower logins",
    )
    banktasks_allow_sqlite_in_production: bool = Field(
        False,
        description="Accept a SQLite DATABASE_URL when BANKTASKS_ENV=production (a "
        "single-machine deployment); every start logs a warning",
    )
    banktasks_allow_unauthenticated_redis: bool = Field(
        False,
        description="Accept a REDIS_URL without password to a non-loopback host when "
        "BANKTASKS_ENV=production (only trusted hosts can reach it); every start logs a warning",
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

    banktasks_soft_time_limit: int = Field(
        300,
        ge=1,
        description="Soft time limit in seconds of a task whose plugin sets none: the task "
        "is stopped cleanly (TaskTimeLimitExceeded, recorded as its failure, not retried)",
    )
    banktasks_time_limit: int = Field(
        360,
        ge=2,
        description="Hard time limit in seconds of a task whose plugin sets none: its pool "
        "process is killed and replaced; must be longer than BANKTASKS_SOFT_TIME_LIMIT",
    )
    banktasks_time_limits: TimeLimitOverrides = Field(
        default_factory=dict,
        description="Time limits of single tasks, over their plugins' and the defaults: "
        "`task=soft/hard` seconds, comma-separated (`acme.nightly_import=600/660`)",
    )
    banktasks_slow_task_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A run that takes more than this share of its task's soft time limit is "
        "logged as slow (`task.slow`, a warning)",
    )
    banktasks_result_cache: bool = Field(
        True,
        description="Result caching of the tasks that declare it (`@task(cache_ttl=...)`); "
        "false: every call runs, nothing is read from or stored in the cache",
    )
    banktasks_max_message_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest task message accepted, in bytes of JSON arguments: a bigger "
        "submission is refused, a bigger message on the broker is dead-lettered unread",
    )
    banktasks_keep_task_arguments: bool = Field(
        False,
        description="Keep each task's arguments with its result in the result backend "
        "(Celery's result_extended); off: arguments are not stored there",
    )

    _plugin_tables: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("banktasks_var_dir", mode="before")
    @classmethod
    def _var_dir_default(cls, value: Any) -> Any:
        # an empty BANKTASKS_VAR_DIR= would be "." (the working directory, made owner-only)
        return Path("var") if value is None or str(value).strip() == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        # The messages never quote the parser's: those show parts of the URL (its password).
        if value is None or value == "":
            return None
        try:
            parts = urlsplit(value)
        except ValueError:
            raise ValueError(
                f"not a URL: expected redis://[:password@]host:port/db; {ENCODE}"
            ) from None
        if parts.scheme not in {"redis", "rediss", "valkey", "valkeys", "unix"}:
            raise ValueError("expected redis://[:password@]host:port/db, rediss://… or unix://…")
        if parts.scheme != "unix" and "@" in parts.path + parts.query + parts.fragment:
            raise ValueError(
                "the password (or user name) holds a '/', '?' or '#' that ends the host part "
                "early: percent-encode them (/ → %2F, ? → %3F, # → %23)"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("expected a host, e.g. redis://127.0.0.1:6379/0")
        try:
            parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        except ValueError:
            raise ValueError(f"bad port (expected a number from 1 to 65535); {ENCODE}") from None
        return value

    @field_validator("database_url", "data_database_url")
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
                f"or sqlite:///var/banking.db; {ENCODE}"
            ) from None
        except ValueError:  # SQLAlchemy's own message quotes the "port": maybe the password
            raise ValueError(f"bad port (expected an integer); {ENCODE}") from None
        backend = url.get_backend_name()
        if backend not in {"sqlite", "postgresql"}:
            raise ValueError("expected a sqlite:// or postgresql+psycopg:// URL")
        if backend != "sqlite" and "@" in f"{url.host or ''}{url.database or ''}":
            raise ValueError(
                "the password holds an '@' (SQLAlchemy ends the password at the first one): "
                "percent-encode it as %40"
            )
        return value

    @model_validator(mode="after")
    def _default_limits(self) -> Settings:
        if self.banktasks_soft_time_limit >= self.banktasks_time_limit:
            raise ValueError(
                f"BANKTASKS_SOFT_TIME_LIMIT={self.banktasks_soft_time_limit} must be shorter "
                f"than BANKTASKS_TIME_LIMIT={self.banktasks_time_limit} (the soft limit stops a "
                "task cleanly before the hard one kills it)"
            )
        return self

    @property
    def default_time_limits(self) -> TimeLimits:
        """The limits of a task whose plugin sets none."""
        return TimeLimits(self.banktasks_soft_time_limit, self.banktasks_time_limit)

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.banktasks_env == "production":
            problems = production_problems(self)
            if problems:
                raise ValueError("; ".join(problems))
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


ENCODE = "percent-encode special characters of the password (@ → %40, / → %2F, space → %20)"


def unauthenticated_network_redis(url: str | None) -> str | None:
    """The host of a Redis URL that has no password and is not on loopback, else None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "unix" or parts.password or is_loopback(parts.hostname):
        return None
    return parts.hostname or "?"


def _is_sqlite(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"


def production_problems(settings: Settings) -> list[str]:
    """What `BANKTASKS_ENV=production` refuses in these settings: one sentence per problem,
    naming the variable and what to change (the opt-outs honoured)."""
    problems = []
    when = "when BANKTASKS_ENV=production"
    if not settings.redis_url:
        problems.append(f"REDIS_URL is required {when} (e.g. redis://:password@redis-host:6379/0)")
    elif (host := unauthenticated_network_redis(settings.redis_url)) and not (
        settings.banktasks_allow_unauthenticated_redis
    ):
        problems.append(
            f"REDIS_URL has no password for {host}, which is not a loopback address: refused "
            f"{when}; add one (redis://:password@host:6379/0, `requirepass` on the server), or "
            "set BANKTASKS_ALLOW_UNAUTHENTICATED_REDIS=true if only trusted hosts reach it"
        )
    if not settings.database_url:
        also = (
            " (SQLite allowed: give the file's absolute path, sqlite:////srv/banktasks/banking.db)"
            if settings.banktasks_allow_sqlite_in_production
            else ""
        )
        problems.append(
            f"DATABASE_URL is required {when} (e.g. postgresql+psycopg://user:password@db-host/"
            f"banking){also}"
        )
    elif _is_sqlite(settings.database_url) and not settings.banktasks_allow_sqlite_in_production:
        problems.append(
            f"DATABASE_URL is SQLite, refused {when}: use PostgreSQL (postgresql+psycopg://user:"
            "password@db-host/banking), or set BANKTASKS_ALLOW_SQLITE_IN_PRODUCTION=true for a "
            "single-machine deployment"
        )
    return problems


def production_opt_outs(settings: Settings) -> list[tuple[str, str]]:
    """(setting, what it lets through) for each production rule an opt-out switches off
    in these settings; empty outside production and when no opt-out is relied upon."""
    if not settings.is_production:
        return []
    used = []
    if settings.banktasks_allow_sqlite_in_production and _is_sqlite(settings.sqlalchemy_url):
        used.append(
            (
                "BANKTASKS_ALLOW_SQLITE_IN_PRODUCTION",
                "the database is SQLite: one machine, one writer at a time",
            )
        )
    host = unauthenticated_network_redis(settings.redis_url)
    if host and settings.banktasks_allow_unauthenticated_redis:
        used.append(
            (
                "BANKTASKS_ALLOW_UNAUTHENTICATED_REDIS",
                f"the broker on {host} takes no password: whoever reaches it can read and "
                "send tasks",
            )
        )
    return used


def warn_about_opt_outs(settings: Settings) -> None:
    """Log a WARNING for each production safeguard an opt-out setting switches off now
    (called whenever an app is built: at every start)."""
    log = get_logger("banktasks.settings")
    for setting, risk in production_opt_outs(settings):
        log.warning("production safeguard switched off", setting=setting, risk=risk)


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
        msg = _scrub(err["msg"].removeprefix("Value error, "), err.get("input"))
        if not err["loc"] and not prefix:  # a core rule about several settings names them
            lines.append(msg)
            continue
        loc = "_".join(str(p) for p in err["loc"]) if err["loc"] else ""
        name = f"{prefix}{loc}".upper() if loc else prefix.rstrip("_").upper() or "settings"
        first = str(err["loc"][0]) if err["loc"] else ""
        field = fields.get(first)
        aliases = {a for f in fields.values() if (a := _env_alias(f))}
        if first in aliases:  # pydantic reports an aliased field by the alias it read
            name = first.upper()
        elif field is not None and (alias := _env_alias(field)):
            name = alias.upper()
        lines.append(f"{name}{_shown(name, err.get('input'))}: {msg}")
    return "; ".join(lines)


def _shown(name: str, value: Any) -> str:
    """`=<value>` for an error line, or nothing: never a secret setting's value, never a
    URL's password (whatever it holds), never a URL setting's value that is not a URL."""
    if SECRET_KEY.search(name) or isinstance(value, dict | BaseModel):
        return ""
    if isinstance(value, str):
        if "://" in value:
            return f"={mask_url_password(value)!r}"
        if name.endswith("URL"):  # not URL-shaped: no telling which part is a password
            return ""
    return f"={value!r}"


def _scrub(msg: str, value: Any) -> str:
    """An error message without the password of any URL in the input (a message of ours
    never quotes one; a plugin's validator might)."""
    values = value.values() if isinstance(value, dict) else [value]
    for item in values:
        if isinstance(item, str) and mask_url_password(item) != item:
            password = item.partition("://")[2].rpartition("@")[0].partition(":")[2]
            msg = msg.replace(password, "***") if password else msg
    return msg


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
