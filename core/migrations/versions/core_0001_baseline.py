"""The core's tables as `banktasks db init` created them before migrations existed.

Empty on purpose: a database made by that `db init` is stamped here, a new one is
created from the models and stamped at the head (see `core.migrate`).

Revision ID: core_0001
"""

from __future__ import annotations

revision = "core_0001"
down_revision = None
branch_labels = ("core",)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
