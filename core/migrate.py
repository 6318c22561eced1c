"""`banktasks db upgrade`: Alembic migrations, one version chain for the core and one for
each plugin that registers its own (`register_migrations`), so a third-party plugin
ships its schema changes with its code.

A chain's first revision is the baseline: the tables as `banktasks db init` created
them before migrations existed, an empty revision. `upgrade(runtime)`, per chain:

- the chain already has a version in `alembic_version`: migrate it to its head;
- none yet, but some of its tables exist (a database made by the old `db init`):
  stamp the baseline, then migrate — the database is upgraded in place;
- none yet and none of its tables exist (a new database, a plugin installed since):
  create its tables from the models and stamp the head.

Then every table still missing (a plugin without a chain) is created from the models.
Tables a `DATA_MAPPING` maps to the bank's own are never created nor altered: a
migration asks `owns_table(name)`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, inspect

from core.db import Base
from core.errors import ConfigError
from core.logging import get_logger

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from core.runtime import Runtime

log = get_logger(__name__)

HERE = Path(__file__).resolve().parent / "migrations"
CORE = "core"

_context: dict[str, Any] = {}


@dataclass
class Chain:
    """One version chain: its branch label, where its revisions are, the tables it owns."""

    label: str
    folder: Path
    package: str
    tables: list[Table] = field(default_factory=list)


def chains(runtime: Runtime) -> list[Chain]:
    """The core's chain and one per plugin that registers migrations; each owns the tables
    whose models are defined in its package (`core.*`, or the plugin's)."""
    found = [Chain(CORE, HERE / "versions", "core")]
    for outcome in runtime.plugins.call_each("register_migrations"):
        if outcome.error is not None:
            raise ConfigError(
                f"plugin {outcome.plugin!r}: register_migrations failed: {outcome.error}"
            )
        if outcome.result is None:
            continue
        folder = Path(outcome.result)
        if not folder.is_dir():
            raise ConfigError(
                f"plugin {outcome.plugin!r}: register_migrations returned {str(folder)!r}, "
                "which is not a folder; return the folder of the plugin's Alembic revisions"
            )
        info = runtime.plugins.infos.get(outcome.plugin)
        module = (info.module if info else None) or outcome.plugin
        found.append(Chain(outcome.plugin, folder, module.rpartition(".")[0] or module))
    skip = set(runtime.db.skip_tables)
    for mapper in Base.registry.mappers:
        table = mapper.local_table
        if not isinstance(table, Table) or table.name in skip:
            continue
        module = mapper.class_.__module__
        owner = max(
            (c for c in found if module == c.package or module.startswith(c.package + ".")),
            key=lambda c: len(c.package),
            default=None,
        )
        if owner is not None:
            owner.tables.append(table)
    return found


def _disabled_tables(runtime: Runtime) -> set[str]:
    """Tables of installed but disabled plugins: left alone (their chain, when the plugin is
    enabled, creates or upgrades them)."""
    packages = []
    for name, info in runtime.plugins.infos.items():
        entry_point = runtime.plugins.entry_points.get(name)
        module = info.module or (entry_point.module if entry_point else None)
        if not info.enabled and module:
            packages.append(module.rpartition(".")[0] or module)
    return {
        mapper.local_table.name
        for mapper in Base.registry.mappers
        if isinstance(mapper.local_table, Table)
        and any(
            mapper.class_.__module__ == p or mapper.class_.__module__.startswith(p + ".")
            for p in packages
        )
    }


def _config(runtime: Runtime, found: list[Chain], connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(c.folder) for c in found))
    config.attributes["connection"] = connection
    config.attributes["schema"] = runtime.db.schema
    return config


@contextmanager
def _migrating(runtime: Runtime) -> Iterator[None]:
    """`owns_table` answers for this runtime while its migrations run."""
    _context["skip"] = set(runtime.db.skip_tables)
    try:
        yield
    finally:
        _context.clear()


def owns_table(name: str) -> bool:
    """For a migration: False when `name` is one of the bank's tables (DATA_MAPPING), which
    banktasks never alters."""
    return name not in _context.get("skip", set())


def has_column(table: str, column: str) -> bool:
    """For a migration: does `table` have `column` (a database may already be current)."""
    from alembic import op

    bind = op.get_bind()
    schema = schema_of(bind)
    return column in {c["name"] for c in inspect(bind).get_columns(table, schema=schema)}


def schema_of(bind: Connection) -> str | None:
    """For a migration: the schema banktasks' tables are in (DATABASE_SCHEMA), for the
    inspector, which does not translate (None: the connection's default)."""
    translate = bind.get_execution_options().get("schema_translate_map") or {}
    return translate.get(None)


def _base(script: ScriptDirectory, chain: Chain) -> str:
    labelled = [
        r
        for r in script.walk_revisions()
        if chain.label in (r.branch_labels or ()) and r.down_revision is None
    ]
    if len(labelled) != 1:
        raise ConfigError(
            f"migrations of {chain.label!r} in {chain.folder}: expected one first revision "
            f"(down_revision = None) with branch_labels = ({chain.label!r},), found "
            f"{len(labelled)}"
        )
    return str(labelled[0].revision)


def _branch_heads(script: ScriptDirectory, heads: tuple[str, ...], base: str) -> list[str]:
    """The current heads that belong to the chain whose first revision is `base`."""
    mine = []
    for head in heads:
        if any(r.revision == base for r in script.walk_revisions(base="base", head=head)):
            mine.append(head)
    return mine


def upgrade(runtime: Runtime) -> dict[str, str]:
    """Bring banktasks' tables to the models' schema (see the module's docstring); return
    each chain's label → what was done (`created`, `upgraded from <rev>`, `stamped
    baseline, upgraded`, `current`)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its progress is ours to log
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    found = chains(runtime)
    done: dict[str, str] = {}
    engine = runtime.db.engine
    with _migrating(runtime), engine.begin() as connection:
        if runtime.db.schema:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{runtime.db.schema}"')
        config = _config(runtime, found, connection)
        script = ScriptDirectory.from_config(config)
        existing = set(inspect(connection).get_table_names(schema=runtime.db.schema))
        heads = MigrationContext.configure(
            connection, opts={"version_table_schema": runtime.db.schema}
        ).get_current_heads()
        for chain in found:
            base = _base(script, chain)
            current = _branch_heads(script, heads, base)
            head = str(script.get_revision(f"{chain.label}@head").revision)  # type: ignore[union-attr]
            if current:
                done[chain.label] = (
                    "current" if current == [head] else f"upgraded from {current[0]}"
                )
            elif any(t.name in existing for t in chain.tables):
                command.stamp(config, base)
                done[chain.label] = "stamped baseline, upgraded"
            else:
                Base.metadata.create_all(connection, tables=chain.tables)
                command.stamp(config, head)
                done[chain.label] = "created"
        command.upgrade(config, "heads")
        disabled = _disabled_tables(runtime)
        missing = [
            t
            for t in Base.metadata.sorted_tables
            if t.name not in existing | set(runtime.db.skip_tables) | disabled
        ]
        Base.metadata.create_all(connection, tables=missing)
    for label, what in done.items():
        log.info("db_upgrade", chain=label, done=what)
    return done


def current_versions(runtime: Runtime) -> dict[str, str | None]:
    """Each chain's label → its revision in the database (None: not there yet)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    found = chains(runtime)
    with runtime.db.engine.connect() as connection:
        script = ScriptDirectory.from_config(_config(runtime, found, connection))
        heads = MigrationContext.configure(
            connection, opts={"version_table_schema": runtime.db.schema}
        ).get_current_heads()
        versions: dict[str, str | None] = {}
        for chain in found:
            mine = _branch_heads(script, heads, _base(script, chain))
            versions[chain.label] = mine[0] if mine else None
    return versions
