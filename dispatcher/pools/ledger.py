"""The pools' rows in the local ledger: counting, taking a free VM, and the manager's
record of each pool's clouds (last failure, back-off) and passes."""

import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError
from ..extensions import db
from ..models import (
    ASSIGNED,
    BOOTING,
    DELETED,
    FAULTY,
    FREE,
    Assignment,
    PoolCloudState,
    PoolLevel,
    PoolPass,
    assigned_values,
)
from ..serializers import as_utc, utcnow

# The states a pool's VM counts in, as the API names them.
STATES = {BOOTING: "booting", FREE: "free", ASSIGNED: "assigned", FAULTY: "faulty"}


def counts(pool: str) -> dict[str, dict[str, int]]:
    """How many of the pool's VMs each cloud has in each state: ``{cloud: {"free": n, ...}}``."""
    found: dict[str, dict[str, int]] = {}
    rows = db.session.execute(
        select(Assignment.cloud, Assignment.status, func.count())
        .where(Assignment.pool == pool, Assignment.status != DELETED)
        .group_by(Assignment.cloud, Assignment.status)
    )
    for cloud, status, number in rows:
        if status in STATES:
            found.setdefault(cloud, dict.fromkeys(STATES.values(), 0))[STATES[status]] = number
    return found


def totals(pool: str) -> dict[str, int]:
    """How many of the pool's VMs are in each state, over all its clouds."""
    summed = dict.fromkeys(STATES.values(), 0)
    for per_cloud in counts(pool).values():
        for state, number in per_cloud.items():
            summed[state] += number
    return summed


def live_rows(pool: str, cloud: str) -> list[Assignment]:
    """The pool's rows on ``cloud`` that are not deleted."""
    return list(
        db.session.scalars(
            select(Assignment)
            .where(Assignment.pool == pool, Assignment.cloud == cloud, Assignment.status != DELETED)
            .order_by(Assignment.id)
        )
    )


def leased(pool: str) -> list[Assignment]:
    """The pool's assigned VMs with a lease, the soonest to end first."""
    return list(
        db.session.scalars(
            select(Assignment)
            .where(
                Assignment.pool == pool,
                Assignment.status == ASSIGNED,
                Assignment.expires_at.is_not(None),
            )
            .order_by(Assignment.expires_at, Assignment.id)
        )
    )


def known_ids(cloud: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` the ledger has a row for on ``cloud``, in any state."""
    if not ids:
        return set()
    return set(
        db.session.scalars(
            select(Assignment.id_vm).where(Assignment.cloud == cloud, Assignment.id_vm.in_(ids))
        )
    )


def _free(pool: str, clouds: list[str]):
    return (
        select(Assignment.id)
        .where(Assignment.pool == pool, Assignment.status == FREE, Assignment.cloud.in_(clouds))
        .order_by(Assignment.ready_at, Assignment.id)
        .limit(1)
    )


def peek_free(pool: str, clouds: list[str]) -> Assignment | None:
    """A free VM of the pool on one of ``clouds``, left free (for a dry run)."""
    found = db.session.scalar(_free(pool, clouds))
    return db.session.get(Assignment, found) if found is not None else None


def take_free(
    pool: str,
    clouds: list[str],
    user: str,
    vm_type: str,
    assigned_by: str | None = None,
    expires_at: datetime.datetime | None = None,
) -> Assignment | None:
    """Assign a free VM of the pool on one of ``clouds`` to ``user``, for ``assigned_by``,
    leased until ``expires_at`` (None: no end): one statement that picks and changes the
    row, so that two requests never get the same VM. None when the pool has no free VM
    there. The caller commits.

    On PostgreSQL the pick skips rows another transaction holds (FOR UPDATE SKIP LOCKED),
    so concurrent requests take different VMs rather than queue for one; SQLite runs one
    writing statement at a time. The status check repeats in the UPDATE all the same.
    """
    candidate = _free(pool, clouds).with_for_update(skip_locked=True).scalar_subquery()
    taken = db.session.execute(
        update(Assignment)
        .where(Assignment.id == candidate, Assignment.status == FREE)
        .values(updated_at=func.now(), **assigned_values(user, vm_type, assigned_by, expires_at))
        .returning(Assignment.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if taken is None:
        return None
    return db.session.get(Assignment, taken, populate_existing=True)


def add_booting(pool: str, cloud: str, node: dict, creation_id: str | None) -> Assignment:
    """Record a VM the manager made (or adopts) as booting; commits.

    A row of a destroyed VM whose id the cloud gave again is taken over.

    :raises ConflictError: a VM the ledger holds has that id (libcloud's Dummy numbers
        its nodes by their count, and gives a live node's id again after a destroy).
    """
    values = {
        "hostname": node["name"] or node["id"],
        "recipe": pool,
        "pool": pool,
        "creation_id": creation_id,
        "status": BOOTING,
        "user": None,
        "ready_at": None,
        "assigned_by": None,
        "expires_at": None,
        "lease_warned_at": None,
    }
    try:
        with db.session.begin_nested():
            row = Assignment(cloud=cloud, id_vm=node["id"], **values)
            db.session.add(row)
    except IntegrityError:
        row = db.session.scalars(
            select(Assignment).where(Assignment.cloud == cloud, Assignment.id_vm == node["id"])
        ).one()
        if row.status != DELETED:
            db.session.rollback()
            raise ConflictError(
                f"{cloud} gave the new VM the id {node['id']}, which a VM of the ledger has"
            ) from None
        for key, value in values.items():
            setattr(row, key, value)
        row.created_at = func.now()
    db.session.commit()
    return row


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
    with each failure in a row; commits."""
    state = _cloud_state(pool, cloud)
    now = utcnow()
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


def finish_pass(pool: str, kept: int) -> None:
    """Note that a pass over the pool ended now, and the pool's levels then (keeping the
    newest ``kept`` of them); commits."""
    now = utcnow()
    row = db.session.get(PoolPass, pool)
    if row is None:
        db.session.add(PoolPass(pool=pool, finished_at=now))
    else:
        row.finished_at = now
    db.session.add(PoolLevel(pool=pool, at=now, **totals(pool)))
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


def last_pass(pool: str) -> datetime.datetime | None:
    row = db.session.get(PoolPass, pool)
    return as_utc(row.finished_at) if row is not None else None


def move(row: Assignment, expected: int, status: int, **values) -> bool:
    """Move ``row`` from ``expected`` to ``status`` unless another process changed it first
    (an assign, a stop); whether it moved. The caller commits."""
    moved = db.session.execute(
        update(Assignment)
        .where(Assignment.id == row.id, Assignment.status == expected)
        .values(status=status, updated_at=func.now(), **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(row)
    return bool(moved)
