"""`export_exports.user_id` no longer references `users`: the users may be a bank's own
table (DATA_MAPPING), even in another database. The task checks that the user exists.

Revision ID: export_0002
Revises: export_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.migrate import schema_of

revision = "export_0002"
down_revision = "export_0001"
branch_labels = None
depends_on = None

TABLE = "export_exports"


def _without_foreign_key() -> sa.Table:
    """The table as of this revision (its columns then, no foreign key): what SQLite copies
    the rows into, since it cannot drop a constraint in place."""
    return sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, nullable=False, index=True),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("end_date", sa.Date, nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("ready_notified_at", sa.BigInteger, nullable=True),
    )


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    keys = [
        fk
        for fk in inspector.get_foreign_keys(TABLE, schema=schema_of(bind))
        if fk["referred_table"] == "users"
    ]
    if not keys:
        return
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, recreate="always", copy_from=_without_foreign_key()):
            pass
        indexes = {ix["name"] for ix in sa.inspect(bind).get_indexes(TABLE)}
        if "ix_export_exports_user_id" not in indexes:  # the copy does not carry it over
            op.create_index("ix_export_exports_user_id", TABLE, ["user_id"])
        return
    for fk in keys:
        op.drop_constraint(fk["name"], TABLE, type_="foreignkey")


def downgrade() -> None:
    pass
