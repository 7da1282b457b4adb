"""Fingerprints of the secrets a database was set up with.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:20:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "secret_fingerprints",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("secret_fingerprints_pkey")),
    )


def downgrade():
    op.drop_table("secret_fingerprints")
