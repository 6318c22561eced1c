"""The fraud plugin's tables (fraud_alerts, fraud_watermark) as `banktasks db init` created them
before migrations existed: the first revision of the plugin's own version chain.

Empty on purpose: a database made by that `db init` is stamped here, a new one gets
the tables from the models and is stamped at the chain's head (see `core.migrate`).

Revision ID: fraud_0001
"""

from __future__ import annotations

revision = "fraud_0001"
down_revision = None
branch_labels = ("fraud",)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
