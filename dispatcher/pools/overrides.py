"""An admin's changes to a warm pool at runtime: its ``pool_overrides`` row, in place of
what POOLS says until cleared. Every reader of a pool (the pass, its status, a release)
applies it; the use cases set and clear it, and commit."""

import dataclasses

from sqlalchemy import delete, select

from .. import clock, locks, revisions
from ..errors import InvalidRequestError
from ..extensions import db
from ..models import PoolOverride
from .spec import PoolSpec

# What an override may change: the two sizes (null: the configured one) and the two flags.
NUMBERS = ("min_ready", "max_total")
FLAGS = ("paused", "draining")
FIELDS = NUMBERS + FLAGS
# ``applied``'s default: read the pool's override from the database.
_READ = object()


def of(pool: str) -> PoolOverride | None:
    """The override of ``pool``, read afresh from the database; None if it has none."""
    return db.session.get(PoolOverride, pool, populate_existing=True)


def _every_override() -> dict:
    """Every pool's override, by pool: its row's columns."""
    return {row.pool: row for row in db.session.execute(select(PoolOverride.__table__))}


# The overrides, kept by the process: a release decides by them without reading them
# while their revision holds.
KEPT = revisions.Kept(revisions.POOL_OVERRIDES, _every_override)


def at(pool: str, revision: int | None):
    """The override of ``pool`` (None if it has none) at a ``revision`` of the overrides
    that a statement of the transaction saw: as the process keeps them (its row's
    columns), if they were read at that revision; else, or without a revision, read now."""
    if revision is None:
        return of(pool)
    return KEPT.at(revision).get(pool)


def applied(spec: PoolSpec, override=_READ) -> PoolSpec:
    """``spec`` as the pool's override (read with one query unless given: a
    ``PoolOverride``, its row's columns or None) changes it: its
    sizes where set, its flags. A min_ready set by the override is the pool's whole floor,
    in place of its schedule too (demand and forecast may still want more). A min_ready
    above the max_total in force (POOLS changed since the override was set) is taken down
    to it."""
    if override is _READ:
        override = of(spec.name)
    if override is None:
        return spec
    max_total = override.max_total if override.max_total is not None else spec.max_total
    min_ready = override.min_ready if override.min_ready is not None else spec.min_ready
    return dataclasses.replace(
        spec,
        min_ready=min(min_ready, max_total),
        max_total=max_total,
        schedule=spec.schedule if override.min_ready is None else (),
        paused=override.paused,
        draining=override.draining,
    )


def _values(row: PoolOverride | None) -> dict:
    if row is None:
        return {"min_ready": None, "max_total": None, "paused": False, "draining": False}
    return {name: getattr(row, name) for name in FIELDS}


def put(spec: PoolSpec, changes: dict, by: str) -> PoolOverride | None:
    """Merge ``changes`` (validated: ``validation.POOL_OVERRIDE``) into the override of the
    pool ``spec`` (the configured one): a field left out is kept, a null size goes back to
    the configured one. The override, or None when it changes nothing any more (its row is
    then gone). Concurrent changes of one pool wait for each other. Not committed.

    :raises InvalidRequestError: the min_ready in force would be above the max_total.
    """
    # Read, merge and write one change after the other: two admins' PATCHes of one pool
    # neither race to insert the row nor lose each other's fields.
    locks.hold_until_commit(f"pool-override:{spec.name}")
    row = of(spec.name)
    merged = {**_values(row), **{name: changes[name] for name in FIELDS if name in changes}}
    min_ready = merged["min_ready"] if merged["min_ready"] is not None else spec.min_ready
    max_total = merged["max_total"] if merged["max_total"] is not None else spec.max_total
    if min_ready > max_total:
        raise InvalidRequestError(
            f"min_ready: {min_ready} would be more than max_total ({max_total})"
        )
    if merged == _values(None):
        if row is not None:
            db.session.delete(row)
            db.session.flush()
            revisions.bump(revisions.POOL_OVERRIDES)
        return None
    if row is None:
        row = PoolOverride(pool=spec.name)
        db.session.add(row)
    for name, value in merged.items():
        setattr(row, name, value)
    row.set_by = by
    row.set_at = clock.now()
    db.session.flush()
    revisions.bump(revisions.POOL_OVERRIDES)
    return row


def clear(pool: str) -> bool:
    """Remove the override of ``pool``; whether it had one. Not committed."""
    removed = db.session.execute(delete(PoolOverride).where(PoolOverride.pool == pool))
    if removed.rowcount:
        revisions.bump(revisions.POOL_OVERRIDES)
    return removed.rowcount > 0


def describe(name: str, override: dict | None, configured: dict) -> str:
    """One line of what the override (as ``override_to_dict`` shows it) changes of the
    pool ``name`` whose POOLS values are ``configured``."""
    if override is None:
        return f"pool {name}: nothing overridden, configured values apply"
    changed = [
        f"{key} {override[key]} (configured {configured[key]})"
        for key in NUMBERS
        if override[key] is not None
    ]
    changed += [flag for flag in FLAGS if override[flag]]
    return f"pool {name}: {', '.join(changed)}"
