"""Warm pools: a ledger row's pool, creation id, readiness and addresses; the manager's
record of each pool's clouds and passes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 17:10:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pool", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("creation_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("public_ips", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("private_ips", sa.JSON(), nullable=True))
        batch_op.create_index("ix_assignments_pool_status", ["pool", "status"], unique=False)
    op.create_table(
        "pool_clouds",
        sa.Column("pool", sa.String(length=80), nullable=False),
        sa.Column("cloud", sa.String(length=80), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("pool", "cloud", name=op.f("pool_clouds_pkey")),
    )
    op.create_table(
        "pool_passes",
        sa.Column("pool", sa.String(length=80), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pool", name=op.f("pool_passes_pkey")),
    )


def downgrade():
    op.drop_table("pool_passes")
    op.drop_table("pool_clouds")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_assignments_pool_status")
        batch_op.drop_column("private_ips")
        batch_op.drop_column("public_ips")
        batch_op.drop_column("ready_at")
        batch_op.drop_column("creation_id")
        batch_op.drop_column("pool")
