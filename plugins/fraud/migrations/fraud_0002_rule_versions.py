"""Fraud alerts record the rule's version and the hash of the settings it ran with
(`rule_version`, `settings_hash`; NULL on alerts stored before).

Revision ID: fraud_0002
Revises: fraud_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.migrate import has_column

revision = "fraud_0002"
down_revision = "fraud_0001"
branch_labels = None
depends_on = None

TABLE = "fraud_alerts"
COLUMNS = {"rule_version": sa.String(32), "settings_hash": sa.String(64)}


def upgrade() -> None:
    missing = [name for name in COLUMNS if not has_column(TABLE, name)]
    if missing:  # batch mode: SQLite adds the columns in place, like any database
        with op.batch_alter_table(TABLE) as batch:
            for name in missing:
                batch.add_column(sa.Column(name, COLUMNS[name], nullable=True))


def downgrade() -> None:
    present = [name for name in COLUMNS if has_column(TABLE, name)]
    if present:
        with op.batch_alter_table(TABLE) as batch:
            for name in present:
                batch.drop_column(name)
