"""The leases in the local ledger: who assigned each VM, when its lease ends, and the
rows the pool manager has to act on."""

import datetime

from sqlalchemy import func, select, update

from ..extensions import db
from ..models import ASSIGNED, FAULTY, Assignment


def extend(row_id: int, expires_at: datetime.datetime) -> bool:
    """Move the end of the lease of an assigned VM; False if it is not assigned (any more).
    A new warning goes before the new end. The caller commits."""
    moved = db.session.execute(
        update(Assignment)
        .where(Assignment.id == row_id, Assignment.status == ASSIGNED)
        .values(expires_at=expires_at, lease_warned_at=None, updated_at=func.now())
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(moved)


def to_warn(now: datetime.datetime, window: float) -> list[Assignment]:
    """Assigned VMs whose lease ends within ``window`` seconds, not yet warned of."""
    return list(
        db.session.scalars(
            select(Assignment)
            .where(
                Assignment.status == ASSIGNED,
                Assignment.expires_at > now,
                Assignment.expires_at <= now + datetime.timedelta(seconds=window),
                Assignment.lease_warned_at.is_(None),
            )
            .order_by(Assignment.expires_at, Assignment.id)
        )
    )


def ended(now: datetime.datetime) -> list[Assignment]:
    """Assigned VMs whose lease has ended, the longest ended first."""
    return list(
        db.session.scalars(
            select(Assignment)
            .where(Assignment.status == ASSIGNED, Assignment.expires_at <= now)
            .order_by(Assignment.expires_at, Assignment.id)
        )
    )


def left_running(now: datetime.datetime) -> list[Assignment]:
    """VMs of no pool released at the end of their lease whose destroy failed: kept
    faulty, with their lease's end, until the manager destroys them (a pool's own are the
    pool's pass to retire)."""
    return list(
        db.session.scalars(
            select(Assignment)
            .where(
                Assignment.status == FAULTY,
                Assignment.pool.is_(None),
                Assignment.expires_at <= now,
            )
            .order_by(Assignment.id)
        )
    )


def get(row_id) -> Assignment | None:
    """The ledger's row with this id (an ASSIGNMENT's ``id``), or None."""
    return db.session.get(Assignment, row_id) if row_id is not None else None


def mark_warned(row: Assignment, now: datetime.datetime) -> bool:
    """Note that the lease of ``row`` was warned of, unless it was released, extended or
    warned of meanwhile; whether this caller is the one to warn. The caller commits."""
    won = db.session.execute(
        update(Assignment)
        .where(
            Assignment.id == row.id,
            Assignment.status == ASSIGNED,
            Assignment.expires_at == row.expires_at,
            Assignment.lease_warned_at.is_(None),
        )
        .values(lease_warned_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(won)
