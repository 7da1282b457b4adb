"""The pool manager's last reconcile report per cloud, for /metrics.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:20:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "reconcile_surveys",
        sa.Column("cloud", sa.String(length=80), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("orphans", sa.Integer(), nullable=False),
        sa.Column("ghosts", sa.Integer(), nullable=False),
        sa.Column("mismatches", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("cloud"),
    )


def downgrade():
    op.drop_table("reconcile_surveys")
