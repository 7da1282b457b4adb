"""Pools sized at runtime: the admins' overrides of a pool (min_ready, max_total, paused,
draining), since when a pool has held more free VMs than its target, and an index on a
pool's assigns by time (its demand and its forecast).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 09:30:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pool_overrides",
        sa.Column("pool", sa.String(length=80), nullable=False),
        sa.Column("min_ready", sa.Integer(), nullable=True),
        sa.Column("max_total", sa.Integer(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("draining", sa.Boolean(), nullable=False),
        sa.Column("set_by", sa.String(length=255), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pool"),
    )
    with op.batch_alter_table("pool_passes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("surplus_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_holdings_pool_started_at", "holdings", ["pool", "started_at"])


def downgrade():
    op.drop_index("ix_holdings_pool_started_at", table_name="holdings")
    with op.batch_alter_table("pool_passes", schema=None) as batch_op:
        batch_op.drop_column("surplus_since")
    op.drop_table("pool_overrides")
