"""Queued requests: the requests for several VMs at once, the request a VM is set aside
for (or was handed over to), and the VMs set aside in a pool's levels.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 09:00:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "vm_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("vms", sa.JSON(), nullable=False),
        sa.Column("cloud", sa.String(length=80), nullable=True),
        sa.Column("lease", sa.Integer(), nullable=True),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("message", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vm_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_vm_requests_state_priority_created",
            ["state", "priority", "created_at"],
            unique=False,
        )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_assignments_request_id"), ["request_id"], unique=False)
    with op.batch_alter_table("pool_levels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reserved", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("pool_levels", schema=None) as batch_op:
        batch_op.drop_column("reserved")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignments_request_id"))
        batch_op.drop_column("request_id")
    with op.batch_alter_table("vm_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_vm_requests_state_priority_created")
    op.drop_table("vm_requests")
