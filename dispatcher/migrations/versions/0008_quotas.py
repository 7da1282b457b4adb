"""Quotas: the admins' rules, the time each assignment is held, and the count of what a
caller holds.

The assignments held at the upgrade become holdings from their assign on, so that a
quota counts them from the first request after it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 08:00:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ASSIGNED = 2


def upgrade():
    op.create_table(
        "quota_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("pool", sa.String(length=80), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "name", "pool"),
    )
    holdings = op.create_table(
        "holdings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("pool", sa.String(length=255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.create_index("ix_holdings_assignment_id", ["assignment_id"], unique=False)
        batch_op.create_index("ix_holdings_holder_ended_at", ["holder", "ended_at"], unique=False)
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assignments_assigned_by_status", ["assigned_by", "status"], unique=False
        )
    assignments = sa.table(
        "assignments",
        sa.column("id", sa.Integer),
        sa.column("status", sa.Integer),
        sa.column("assigned_by", sa.String),
        sa.column("pool", sa.String),
        sa.column("recipe", sa.String),
        sa.column("assigned_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("expires_at", sa.DateTime(timezone=True)),
    )
    held = sa.select(
        assignments.c.id,
        assignments.c.assigned_by,
        sa.func.coalesce(assignments.c.pool, assignments.c.recipe),
        sa.func.coalesce(assignments.c.assigned_at, assignments.c.updated_at),
        assignments.c.expires_at,
    ).where(assignments.c.status == ASSIGNED)
    op.execute(
        holdings.insert().from_select(
            ["assignment_id", "holder", "pool", "started_at", "lease_until"], held
        )
    )


def downgrade():
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_assignments_assigned_by_status")
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.drop_index("ix_holdings_holder_ended_at")
        batch_op.drop_index("ix_holdings_assignment_id")
    op.drop_table("holdings")
    op.drop_table("quota_rules")
