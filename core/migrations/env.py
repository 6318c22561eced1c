"""Alembic's environment for banktasks: run by `core.migrate`, never by the `alembic`
command. The connection (with DATABASE_SCHEMA's translation) comes from the caller."""

from __future__ import annotations

from alembic import context

from core.db import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table_schema=context.config.attributes.get("schema"),  # DATABASE_SCHEMA
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters a table by copying it
)
with context.begin_transaction():
    context.run_migrations()
