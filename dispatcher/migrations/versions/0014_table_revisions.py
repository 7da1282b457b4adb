"""Table revisions: how many times the quota rules and the pools' overrides were changed,
so that each process keeps what it read of them until they change.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-27 09:00:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "table_revisions",
        sa.Column("table_name", sa.String(length=40), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("table_name"),
    )


def downgrade():
    op.drop_table("table_revisions")
