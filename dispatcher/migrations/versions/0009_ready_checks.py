"""A pool's ready checks and renewals: when each VM was last checked, its failed checks
in a row, and the fingerprint of the pool's entry it was made from.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 08:10:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("check_failures", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("template", sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_column("template")
        batch_op.drop_column("check_failures")
        batch_op.drop_column("checked_at")
