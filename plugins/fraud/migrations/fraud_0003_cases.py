"""Cases, suppressions and their audit trail: tables `fraud_cases`, `fraud_suppressions`,
`fraud_audit` (append-only: triggers refuse UPDATE and DELETE), and on `fraud_alerts`
the columns `case_id` and `suppression_id` (NULL on alerts stored before), indexed.

Idempotent: a table, column, index or trigger already there is left as it is. The
three tables are spelled out here as they are at this revision (not taken from the
models, which later revisions may change); the triggers' statements are copied too.

Revision ID: fraud_0003
Revises: fraud_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import inspect

from core.migrate import has_column, schema_of

revision = "fraud_0003"
down_revision = "fraud_0002"
branch_labels = None
depends_on = None

TABLE = "fraud_alerts"
COLUMNS = ("case_id", "suppression_id")
MOMENT = sa.BigInteger  # core.db.UTCDateTime: epoch microseconds
REFUSAL = "fraud_audit is append-only"

_meta = sa.MetaData()
NEW_TABLES = (
    sa.Table(
        "fraud_cases",
        _meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False, index=True),
        sa.Column("open_user_id", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(100), nullable=True),
        sa.Column("resolution", sa.String(32), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("opened_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.Column("closed_at", MOMENT, nullable=True),
        sa.Column("announced_at", MOMENT, nullable=True),
        sa.UniqueConstraint("open_user_id", name="uq_fraud_cases_open_user_id"),
        sa.Index("ix_fraud_cases_status_opened", "status", "opened_at"),
    ),
    sa.Table(
        "fraud_suppressions",
        _meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer, nullable=True),
        sa.Column("counterparty", sa.String(200), nullable=True),
        sa.Column("until", MOMENT, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("lifted_at", MOMENT, nullable=True),
        sa.Column("lifted_by", sa.String(100), nullable=True),
        sa.Index("ix_fraud_suppressions_rule_until", "rule", "until"),
    ),
    sa.Table(
        "fraud_audit",
        _meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", MOMENT, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("object_id", sa.Integer, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Index("ix_fraud_audit_object", "object_type", "object_id"),
    ),
)


def _trigger_ddl(dialect: str, schema: str | None) -> list[str]:
    """The statements that make fraud_audit append-only (as at this revision)."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS fraud_audit_no_{verb.lower()} BEFORE {verb} "
            f"ON fraud_audit BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
            for verb in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        prefix = f'"{schema}".' if schema else ""
        function = f"{prefix}fraud_audit_append_only"
        return [
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$",
            f"DROP TRIGGER IF EXISTS fraud_audit_append_only ON {prefix}fraud_audit",
            f"CREATE TRIGGER fraud_audit_append_only BEFORE UPDATE OR DELETE ON "
            f"{prefix}fraud_audit FOR EACH ROW EXECUTE FUNCTION {function}()",
        ]
    return []


def _indexes(table: str) -> set[str]:
    bind = op.get_bind()
    return {i["name"] for i in inspect(bind).get_indexes(table, schema=schema_of(bind))}


def upgrade() -> None:
    bind = op.get_bind()
    for table in NEW_TABLES:
        table.create(bind, checkfirst=True)
    for statement in _trigger_ddl(bind.dialect.name, schema_of(bind)):
        bind.exec_driver_sql(statement)
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
