"""The pools' levels at the end of each pass of the pool manager, for their charts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 02:25:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pool_levels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=80), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("booting", sa.Integer(), nullable=False),
        sa.Column("free", sa.Integer(), nullable=False),
        sa.Column("assigned", sa.Integer(), nullable=False),
        sa.Column("faulty", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pool_levels", schema=None) as batch_op:
        batch_op.create_index("ix_pool_levels_pool_id", ["pool", "id"], unique=False)


def downgrade():
    with op.batch_alter_table("pool_levels", schema=None) as batch_op:
        batch_op.drop_index("ix_pool_levels_pool_id")
    op.drop_table("pool_levels")
