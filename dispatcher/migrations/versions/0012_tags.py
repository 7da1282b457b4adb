"""Tags: what an assignment, a queued request and a history entry were tagged with.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-15 09:00:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("assignments", "vm_requests", "audit_entries")


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("tags", sa.JSON(none_as_null=True), nullable=True))


def downgrade():
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("tags")
