"""Transactions get a channel (cash, card, wire, ach, internal; NULL for older rows).

Revision ID: core_0002
Revises: core_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.migrate import has_column, owns_table

revision = "core_0002"
down_revision = "core_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if owns_table("transactions") and not has_column("transactions", "channel"):
        with op.batch_alter_table("transactions") as batch:
            batch.add_column(sa.Column("channel", sa.String(16), nullable=True))


def downgrade() -> None:
    if owns_table("transactions") and has_column("transactions", "channel"):
        with op.batch_alter_table("transactions") as batch:
            batch.drop_column("channel")
