"""Spans: each period a VM spent in one state for one holder, in place of the holdings
(the assigned periods only), and the size a VM was made with.

Each holding becomes an assigned span. Each VM live at the upgrade and not assigned gets
a span open in its state from the moment the ledger knows it reached it: a free pool VM
from when it was ready, a booting one from its creation, any other from its row's last
change.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-20 09:00:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

FREE, ASSIGNED, DELETED, BOOTING = 1, 2, 4, 5

ASSIGNMENTS = sa.table(
    "assignments",
    sa.column("id", sa.Integer),
    sa.column("cloud", sa.String),
    sa.column("pool", sa.String),
    sa.column("recipe", sa.String),
    sa.column("status", sa.Integer),
    sa.column("user", sa.String),
    sa.column("assigned_by", sa.String),
    sa.column("tags", sa.JSON),
    sa.column("request_id", sa.Integer),
    sa.column("expires_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("ready_at", sa.DateTime(timezone=True)),
)
HOLDINGS = sa.table(
    "holdings",
    sa.column("id", sa.Integer),
    sa.column("assignment_id", sa.Integer),
    sa.column("holder", sa.String),
    sa.column("pool", sa.String),
    sa.column("started_at", sa.DateTime(timezone=True)),
    sa.column("lease_until", sa.DateTime(timezone=True)),
    sa.column("ended_at", sa.DateTime(timezone=True)),
)
SPAN_COLUMNS = [
    "assignment_id",
    "cloud",
    "pool",
    "vm_type",
    "status",
    "user",
    "holder",
    "tags",
    "request_id",
    "started_at",
    "lease_until",
    "ended_at",
]


def _create_holdings():
    op.create_table(
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
        batch_op.create_index("ix_holdings_pool_started_at", ["pool", "started_at"], unique=False)


def upgrade():
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("size", sa.String(length=255), nullable=True))
    spans = op.create_table(
        "spans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("cloud", sa.String(length=80), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=True),
        sa.Column("vm_type", sa.String(length=255), nullable=True),
        sa.Column("size", sa.String(length=255), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("tags", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("spans", schema=None) as batch_op:
        batch_op.create_index("ix_spans_holder_ended_at", ["holder", "ended_at"], unique=False)
        batch_op.create_index("ix_spans_pool_started_at", ["pool", "started_at"], unique=False)
        batch_op.create_index("ix_spans_started_at", ["started_at"], unique=False)

    a, h = ASSIGNMENTS, HOLDINGS
    held = a.c.status == ASSIGNED
    still_held = h.c.ended_at.is_(None) & held
    # A holding's pool was the VM's pool, else the vm_type it was assigned for.
    from_holdings = sa.select(
        h.c.assignment_id,
        a.c.cloud,
        a.c.pool,
        sa.case((a.c.pool.is_(None), h.c.pool), else_=a.c.recipe),
        sa.literal(ASSIGNED),
        sa.case((still_held, a.c["user"]), else_=None),
        h.c.holder,
        sa.case((still_held, a.c.tags), else_=None),
        sa.case((still_held, a.c.request_id), else_=None),
        h.c.started_at,
        h.c.lease_until,
        # A holding still open on a row no longer assigned ends at the row's last change.
        sa.case(
            (h.c.ended_at.is_(None) & ~held, sa.func.coalesce(a.c.updated_at, h.c.started_at)),
            else_=h.c.ended_at,
        ),
    ).select_from(h.join(a, a.c.id == h.c.assignment_id))
    op.execute(spans.insert().from_select(SPAN_COLUMNS, from_holdings.order_by(h.c.id)))

    since = sa.case(
        ((a.c.status == FREE) & a.c.ready_at.is_not(None), a.c.ready_at),
        ((a.c.status == BOOTING) & a.c.created_at.is_not(None), a.c.created_at),
        else_=sa.func.coalesce(a.c.updated_at, a.c.created_at),
    )
    live_unheld = sa.select(
        a.c.id,
        a.c.cloud,
        a.c.pool,
        a.c.recipe,
        a.c.status,
        sa.null(),
        sa.null(),
        sa.null(),
        a.c.request_id,
        since,
        sa.null(),
        sa.null(),
    ).where(a.c.status.not_in([ASSIGNED, DELETED]), since.is_not(None))
    op.execute(spans.insert().from_select(SPAN_COLUMNS, live_unheld.order_by(a.c.id)))
    op.drop_table("holdings")
    # A VM's open span: made once the spans are in.
    open_only = sa.text("ended_at IS NULL")
    op.create_index(
        "ix_spans_open",
        "spans",
        ["assignment_id"],
        postgresql_where=open_only,
        sqlite_where=open_only,
    )


def downgrade():
    _create_holdings()
    spans = sa.table(
        "spans",
        sa.column("id", sa.Integer),
        sa.column("assignment_id", sa.Integer),
        sa.column("status", sa.Integer),
        sa.column("holder", sa.String),
        sa.column("pool", sa.String),
        sa.column("vm_type", sa.String),
        sa.column("started_at", sa.DateTime(timezone=True)),
        sa.column("lease_until", sa.DateTime(timezone=True)),
        sa.column("ended_at", sa.DateTime(timezone=True)),
    )
    assigned = (
        sa.select(
            spans.c.assignment_id,
            spans.c.holder,
            sa.func.coalesce(spans.c.pool, spans.c.vm_type),
            spans.c.started_at,
            spans.c.lease_until,
            spans.c.ended_at,
        )
        .where(spans.c.status == ASSIGNED)
        .order_by(spans.c.id)
    )
    columns = ["assignment_id", "holder", "pool", "started_at", "lease_until", "ended_at"]
    op.execute(HOLDINGS.insert().from_select(columns, assigned))
    op.drop_table("spans")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_column("size")
