"""What the worker records of its passes over each pool: each cloud's last failure and
back-off, when the last pass ended, and the pool's levels then (its VMs are the ledger's,
``bookkeeping.ledger``)."""

import datetime

from sqlalchemy import delete, select

from .. import clock
from ..bookkeeping import ledger
from ..extensions import db
from ..models import PoolCloudState, PoolLevel, PoolPass
from ..serializers import as_utc


def cloud_states(pool: str) -> dict[str, PoolCloudState]:
    """The manager's record of each of the pool's clouds, by cloud name."""
    return {
        state.cloud: state
        for state in db.session.scalars(select(PoolCloudState).where(PoolCloudState.pool == pool))
    }


def _cloud_state(pool: str, cloud: str) -> PoolCloudState:
    state = db.session.get(PoolCloudState, (pool, cloud))
    if state is None:
        state = PoolCloudState(pool=pool, cloud=cloud, failures=0)
        db.session.add(state)
    return state


def record_failure(pool: str, cloud: str, message: str, backoff: float, backoff_max: float) -> None:
    """Note the cloud's failure for the pool, and leave it alone for a while that doubles
    with each failure in a row; commits (a failure is kept whatever the pass meets next)."""
    state = _cloud_state(pool, cloud)
    now = clock.now()
    state.failures = (state.failures or 0) + 1
    state.last_error, state.last_error_at = message[:1000], now
    pause = min(backoff * 2 ** (state.failures - 1), backoff_max)
    state.retry_at = now + datetime.timedelta(seconds=pause)
    db.session.commit()


def record_success(pool: str, cloud: str) -> None:
    """The cloud made a VM for the pool: no back-off; the last failure stays on record."""
    state = db.session.get(PoolCloudState, (pool, cloud))
    if state is not None and (state.failures or state.retry_at):
        state.failures, state.retry_at = 0, None
        db.session.commit()


def finish_pass(pool: str, kept: int, surplus_since: datetime.datetime | None = None) -> None:
    """Note that a pass over the pool ended now, since when the pool has held free VMs
    beyond its target (None: it holds none), and the pool's levels then (keeping the
    newest ``kept`` of them); commits."""
    now = clock.now()
    row = db.session.get(PoolPass, pool)
    if row is None:
        db.session.add(PoolPass(pool=pool, finished_at=now, surplus_since=surplus_since))
    else:
        row.finished_at, row.surplus_since = now, surplus_since
    db.session.add(PoolLevel(pool=pool, at=now, **ledger.pool_totals(pool)))
    db.session.flush()
    oldest_kept = db.session.scalar(
        select(PoolLevel.id)
        .where(PoolLevel.pool == pool)
        .order_by(PoolLevel.id.desc())
        .offset(kept - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        db.session.execute(
            delete(PoolLevel).where(PoolLevel.pool == pool, PoolLevel.id < oldest_kept)
        )
    db.session.commit()


def levels(pool: str, after: int | None = None) -> list[PoolLevel]:
    """The pool's levels at the end of its passes, oldest first; those after the one
    numbered ``after`` if given."""
    query = select(PoolLevel).where(PoolLevel.pool == pool)
    if after is not None:
        query = query.where(PoolLevel.id > after)
    return list(db.session.scalars(query.order_by(PoolLevel.id)))


def surplus_since(pool: str) -> datetime.datetime | None:
    """Since when the pool has held free VMs beyond its target, as its last pass found."""
    row = db.session.get(PoolPass, pool)
    return as_utc(row.surplus_since) if row is not None else None


def last_pass(pool: str) -> datetime.datetime | None:
    row = db.session.get(PoolPass, pool)
    return as_utc(row.finished_at) if row is not None else None
