"""Cases, suppressions and their audit trail: tables `fraud_cases`, `fraud_suppressions`,
`fraud_audit` (append-only: triggers refuse UPDATE and DELETE), and on `fraud_alerts`
the columns `case_id` and `suppression_id` (NULL on alerts stored before), indexed.

Idempotent: a table, column, index or trigger already there is left as it is. The
three tables are created from the models (`Table.create(checkfirst=True)`), as
they are at this revision's release; a later revision that changes them checks
for its own columns, like this one does.

Revision ID: fraud_0003
Revises: fraud_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import inspect

from core.migrate import has_column, schema_of
from plugins.fraud.models import FraudAudit, FraudCase, FraudSuppression, audit_trigger_ddl

revision = "fraud_0003"
down_revision = "fraud_0002"
branch_labels = None
depends_on = None

TABLE = "fraud_alerts"
COLUMNS = ("case_id", "suppression_id")
NEW_TABLES = (FraudCase.__table__, FraudSuppression.__table__, FraudAudit.__table__)


def _indexes(table: str) -> set[str]:
    bind = op.get_bind()
    return {i["name"] for i in inspect(bind).get_indexes(table, schema=schema_of(bind))}


def upgrade() -> None:
    bind = op.get_bind()
    for table in NEW_TABLES:
        table.create(bind, checkfirst=True)  # fraud_audit's triggers come with it
    for statement in audit_trigger_ddl(bind.dialect.name, schema_of(bind)):
        bind.exec_driver_sql(statement)  # and when the table was there already
    missing = [name for name in COLUMNS if not has_column(TABLE, name)]
    indexes = _indexes(TABLE)
    unindexed = [name for name in COLUMNS if f"ix_{TABLE}_{name}" not in indexes]
    if missing or unindexed:  # batch mode: SQLite adds the columns in place, like any database
        with op.batch_alter_table(TABLE) as batch:
            for name in missing:
                batch.add_column(sa.Column(name, sa.Integer(), nullable=True))
            for name in unindexed:
                batch.create_index(f"ix_{TABLE}_{name}", [name])


def downgrade() -> None:
    indexes = _indexes(TABLE)
    present = [name for name in COLUMNS if has_column(TABLE, name)]
    if present:
        with op.batch_alter_table(TABLE) as batch:
            for name in present:
                if f"ix_{TABLE}_{name}" in indexes:
                    batch.drop_index(f"ix_{TABLE}_{name}")
                batch.drop_column(name)
    bind = op.get_bind()
    for table in reversed(NEW_TABLES):
        table.drop(bind, checkfirst=True)
    if bind.dialect.name == "postgresql":
        schema = schema_of(bind)
        prefix = f'"{schema}".' if schema else ""
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {prefix}fraud_audit_append_only()")
