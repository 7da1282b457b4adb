"""Assigning, releasing and extending VMs: the bookkeeping, the leases, the cloud and the
history together."""

import dataclasses
from functools import partial

from flask import current_app

from .. import bookkeeping, history, leases, pools, quotas, revisions, tagging
from ..bookkeeping import ledger
from ..bookkeeping.base import describe_holder
from ..bookkeeping.local import released
from ..clouds import Cloud, nodes
from ..errors import CloudError, ConflictError, DispatcherError, NotFoundError
from ..extensions import db, nothing_written
from ..leases import notices
from ..models import ASSIGNED, FREE
from ..pools import overrides
from ..serializers import assignment_to_dict, utc_iso
from .ending import Wording, end_vm, fill

# How the history tells of the destroy that follows a release.
RELEASED = Wording(
    destroyed="{what} and deleted",
    gone="{what}; the node was gone already",
    failed="{what}, but deleting it failed: {error}",
)


def _resolve(cloud: Cloud, node: str | None, hostname: str | None, emulate: bool) -> dict:
    """The bookkeeping row of the VM; one it lacks, the backend may adopt from the cloud."""
    row = bookkeeping.backend().find(cloud.name, node_id=node, hostname=hostname)
    return row if row is not None else _adopted(cloud, node, hostname, emulate)


def _adopted(cloud: Cloud, node: str | None, hostname: str | None, emulate: bool) -> dict:
    """The row of a VM the bookkeeping lacks, adopted from the cloud by the backend."""
    keeper = bookkeeping.backend()
    if ledger.is_alone():
        ledger.end_alone()  # the adoption's savepoint needs a transaction
    fetch = partial(nodes.get_node, cloud, node_id=node, hostname=hostname)
    adopted = keeper.adopt(cloud.name, node or hostname, fetch, emulate)
    if not emulate:
        db.session.commit()  # the VM is the ledger's now, whatever the request meets next
    return adopted


def _known(cloud: Cloud, node: str | None, hostname: str | None, emulate: bool) -> dict:
    """The bookkeeping row of the VM, never adopted.

    :raises NotFoundError: the bookkeeping has no such VM.
    """
    row = bookkeeping.backend().find(cloud.name, node_id=node, hostname=hostname)
    if row is None:
        raise NotFoundError(
            f"no valid node id nor hostname here: the ledger has no {node or hostname}"
        )
    return row


@dataclasses.dataclass
class Recording:
    """The history entry of the change ``_audited`` runs: its columns so far (``entry``,
    the VM's found), whether the session is sent in autocommit so that the change's own
    statement may write it (``alone``: ``ledger.begin_alone``), and whether it did
    (``written``)."""

    entry: dict
    alone: bool
    written: bool = False


def _audited(
    action: str,
    cloud: Cloud,
    caller: str,
    reference: dict,
    emulate: bool,
    change,
    find=_resolve,
    alone: bool = False,
):
    """Find the VM (``find``), run ``change(row, recording)`` and record the outcome in the
    history; the answer and its history entry's id (None in a dry run, or when the
    change's own statement wrote it).

    A success is committed together with its audit entry; a failure is rolled back
    (unless nothing was written: its reads are committed with the entry) and then
    recorded. A dry run records nothing. With ``alone``, where nothing holds a
    transaction yet (``ledger.alone_possible``), the lookup is sent in autocommit, and
    the change may write its entry in its own statement (``Recording``), or leave
    autocommit first (``ledger.end_alone``).
    """
    entry = {"cloud": cloud.name, "action": action, "caller": caller, **reference}
    recording = Recording(entry, alone and not emulate and ledger.alone_possible())
    if recording.alone:
        ledger.begin_alone()
    try:
        row = find(cloud, reference.get("id_vm"), reference.get("hostname"), emulate)
        entry.update(id_vm=row["id_vm"], hostname=row["hostname"])
        if action != "assign" and row["status"] == ASSIGNED:
            entry.update(user=row["user"], vm_type=row["recipe"])  # whose VM it is
        answer = change(row, recording)
    except DispatcherError as exc:
        if not nothing_written():
            db.session.rollback()
        if not emulate:
            history.record(**entry, outcome=exc.outcome, message=exc.message[:1000])
            db.session.commit()
        raise
    if emulate:
        return answer, None
    if recording.written:
        history.counted(**entry, outcome="ok")
        db.session.commit()  # sends nothing: gives the connection back
        return answer, None
    recorded = history.record(**entry, outcome="ok", message=answer["result"])
    db.session.commit()
    return answer, recorded


def _dry_run(row: dict, what: str) -> dict:
    return {"id_vm": row["id_vm"], "id": row["id"], "result": f"Node {row['id_vm']} {what}"}


def _leased_until(expires_at) -> dict:
    """The answer's ``expires_at``, for a leased VM only."""
    return {"expires_at": utc_iso(expires_at)} if expires_at is not None else {}


def assign_vm(
    cloud: Cloud,
    caller: str,
    user: str,
    vm_type: str,
    node: str | None = None,
    hostname: str | None = None,
    lease: int | None = None,
    emulate: bool = False,
    tags: dict | None = None,
) -> dict:
    """Give a free VM to ``user`` for ``vm_type``, leased for ``lease`` seconds (else its
    pool's or the default lease, if any), tagged with ``tags``; ``{"id_vm", "id",
    "result"}``, and ``expires_at`` for a leased VM.

    :raises NotFoundError: neither the bookkeeping nor the cloud has the VM.
    :raises ConflictError: the VM is not free; the message names the holder.
    :raises InvalidRequestError: a lease longer than its cap; more tags than TAG_MAX (not
        in the history), or without a key the VM's pool requires; a lease or tags beside
        Cistern (nothing asked of it).
    :raises QuotaExceededError: a quota of the caller refuses it.
    :raises BookkeepingUnavailableError: Cistern cannot be reached.
    """

    leases.refuse_without_ledger(lease)  # before anything is asked of Cistern
    tags = tagging.accepted(tags)

    def assign(row: dict, _recording: Recording) -> dict:
        if row["status"] != FREE:
            raise ConflictError(describe_holder(row))
        ledger_row = bookkeeping.backend().ledger_row(row)
        spec = pools.find(ledger_row.pool) if ledger_row is not None else None
        tagging.require(spec, tags)  # a pool's VM named by node too
        seconds = leases.resolve(lease, spec)
        if ledger_row is not None:
            pool = ledger_row.pool or vm_type
            # The rules at the revision the lookup saw: the process's own copy, mostly.
            seen = ledger.revision_seen(ledger_row, revisions.QUOTA_RULES)
            seconds = quotas.admit_assign(caller, pool, lease, seconds, emulate, revision=seen)
        expires_at = leases.until(seconds)
        if emulate:
            dry = _dry_run(row, f"would be assigned to {user} (emulated)")
            return {**dry, **_leased_until(expires_at)}
        keeper = bookkeeping.backend()
        answer = keeper.assign(cloud.name, row, user, vm_type, caller, expires_at, tags)
        return {**answer, **_leased_until(expires_at)}

    reference = {
        "id_vm": node,
        "hostname": hostname,
        "user": user,
        "vm_type": vm_type,
        "tags": tags or None,
    }
    return _audited("assign", cloud, caller, reference, emulate, assign)[0]


def _recorded_release(changed):
    """The history entry of a release as the statement that frees the VM writes it:
    every column bound, one entry if the VM was freed, none if not."""
    return history.written_by(changed, {})


def _recorded_kept_release(changed, before):
    """The history entry of a release as the statement that finds and frees the VM
    writes it (``ledger.release_kept``): the VM and its holder as they were (``before``,
    the assignments before the statement), the rest bound; one entry if the VM was
    freed, none if not."""
    holder = {
        "id_vm": before.c.id_vm,
        "hostname": before.c.hostname,
        "user": before.c.user,
        "vm_type": before.c.recipe,
    }
    return history.written_by(changed.join(before, before.c.id == changed.c.id), holder)


def _reused(pool: pools.PoolSpec, override) -> bool:
    """Whether a release keeps the pool's VMs (made from a current template) free for
    the next assign: the pool reuses them, and an admin does not drain it (``override``:
    the pool's override, as ``overrides.at`` gives it)."""
    return pool.release == "reuse" and not overrides.applied(pool, override).draining


def _keeping() -> ledger.Keeping | None:
    """What a release keeps free, as the statement that finds the VM can decide it
    (``ledger.release_kept``): the VMs of the pools ``_reused`` by the overrides this
    process keeps, and those of no pool with RELEASE_KEEPS_NODE; None when none."""
    every = pools.every()
    reusing = [pool for pool in every if pool.release == "reuse"]
    revision = overrides.KEPT.guess() if reusing else None
    reused = [pool for pool in reusing if _reused(pool, overrides.at(pool.name, revision))]
    rest = current_app.config["RELEASE_KEEPS_NODE"]
    if not reused and not rest:
        return None
    return ledger.Keeping(
        current=tuple(
            (pool.name, cloud, template)
            for pool in reused
            for cloud, template in pool.templates.items()
        ),
        named=tuple(pool.name for pool in every),
        rest=rest,
        revision=revision if reused else None,
    )


def release_vm(
    cloud: Cloud,
    caller: str,
    node: str | None = None,
    hostname: str | None = None,
    emulate: bool = False,
    admin: bool = False,
    hold: bool = False,
) -> dict:
    """Free an assigned VM, then destroy it; ``{"id_vm", "id", "result"}``.

    With RELEASE_KEEPS_NODE the VM is kept (and free for the next assign). A VM of a warm
    pool follows its pool's ``release``: ``reuse`` keeps it free in the pool, unless it
    was made from a template the pool no longer has or an admin drains the pool; ``destroy``
    keeps it from being handed out (faulty) until it is destroyed, here or, should the
    cloud fail, by the pool manager. With ``hold`` any VM to destroy is kept so (the
    manager's release at the end of a lease, which it sees through).

    A leased VM is released only by the caller who assigned it or an ``admin``; its
    lease webhook is told.

    :raises NotFoundError: neither the bookkeeping nor the cloud has the VM.
    :raises ConflictError: the VM is not assigned.
    :raises ForbiddenError: a leased VM that another caller assigned.
    :raises BookkeepingUnavailableError: Cistern cannot be reached (nothing changed).
    :raises CloudError: released, but the cloud failed to destroy the VM.
    """
    keep = current_app.config["RELEASE_KEEPS_NODE"]

    def find(cloud: Cloud, node: str | None, hostname: str | None, emulate: bool) -> dict:
        """``_resolve``; by node, where the lookup is a transaction of its own, the same
        statement frees the VM if the checks below would just keep it: all there is to
        write, with its entry (``Keeping``)."""
        keeping = _keeping() if node is not None and ledger.is_alone() else None
        if keeping is None:
            return _resolve(cloud, node, hostname, emulate)
        said = released(node)
        entry = history.bound(
            cloud=cloud.name, action="release", caller=caller, outcome="ok", message=said
        )
        keeper = bookkeeping.backend()
        row = keeper.find_or_release(cloud.name, node, keeping, _recorded_kept_release, entry)
        return row if row is not None else _adopted(cloud, node, hostname, emulate)

    def release(row: dict, recording: Recording) -> dict:
        nonlocal keep
        if row["status"] != ASSIGNED:
            raise ConflictError(describe_holder(row))
        ledger_row = bookkeeping.backend().ledger_row(row)
        if ledger.freed(ledger_row):
            # Assigned without a lease, and kept as the lines below would decide: freed
            # by the statement that found it, with its entry.
            keep = recording.written = True
            return {"id_vm": row["id_vm"], "id": row["id"], "result": released(row["id_vm"])}
        leased = None
        if ledger_row is not None and ledger_row.expires_at is not None:
            leases.check_holder(ledger_row.assigned_by, caller, admin, "release it", row["id_vm"])
            leased = notices.Leased.of(ledger_row)  # before the release forgets it
        pool = pools.find(ledger_row.pool) if ledger_row is not None else None
        if pool is not None:
            # A VM made from a template the pool no longer has is not kept, even to reuse;
            # nor one of a pool an admin drains (read only when it would be kept).
            current = pool.is_current(ledger_row.cloud, ledger_row.template)
            keep = pool.release == "reuse" and current
            if keep:
                seen = ledger.revision_seen(ledger_row, revisions.POOL_OVERRIDES)
                keep = _reused(pool, overrides.at(pool.name, seen))
        if emulate:
            then = "" if keep else " and deleted"
            return _dry_run(row, f"would be released{then} (emulated)")
        retire = not keep and (pool is not None or hold)
        if recording.alone:
            if keep and leased is None and ledger_row is not None:
                # Nothing else to write and nothing to do after: the release and its
                # entry, one statement.
                said = released(row["id_vm"])
                bound = history.bound(**recording.entry, outcome="ok", message=said)
                alone = ledger.Alone(_recorded_release, bound)
                answer = bookkeeping.backend().release(cloud.name, row, alone=alone)
                recording.written = True
                return answer
            ledger.end_alone()
        answer = bookkeeping.backend().release(cloud.name, row, retire=retire)
        if leased is not None:
            notices.notify("released", leased)
        return answer

    reference = {"id_vm": node, "hostname": hostname}
    answer, entry = _audited(
        "release", cloud, caller, reference, emulate, release, find=find, alone=True
    )
    if emulate or keep:
        return answer
    what = answer["result"]
    try:
        end_vm(cloud, str(answer["id_vm"]), what, entry, RELEASED)
    except DispatcherError as exc:
        raise CloudError(fill(RELEASED.failed, what=what, error=exc.message)) from exc
    return {**answer, "result": f"{what} and deleted"}


def extend_vm(
    cloud: Cloud,
    caller: str,
    lease: int,
    node: str | None = None,
    hostname: str | None = None,
    admin: bool = False,
    tags: dict | None = None,
) -> dict:
    """Make the lease of an assigned VM end ``lease`` seconds from now, within its cap,
    and its tags ``tags`` if given (empty: none; not given: kept); ``{"id_vm", "id",
    "result", "expires_at"}``. Only the caller who assigned it, or an ``admin``, may.

    :raises NotFoundError: the ledger has no such VM.
    :raises ConflictError: the VM is not assigned.
    :raises ForbiddenError: another caller assigned it.
    :raises InvalidRequestError: longer than the cap; a bookkeeping without leases; more
        tags than TAG_MAX (not in the history).
    :raises QuotaExceededError: a quota of the VM's assigner refuses it.
    """
    leases.refuse_without_ledger(lease)  # before anything is asked of Cistern
    tags = tagging.accepted(tags)

    def extend(row: dict, _recording: Recording) -> dict:
        if row["status"] != ASSIGNED:
            raise ConflictError(describe_holder(row))
        ledger_row = ledger.get(row["id"])
        leases.check_holder(ledger_row.assigned_by, caller, admin, "extend its lease", row["id_vm"])
        seconds = leases.resolve(lease, pools.find(ledger_row.pool))
        if ledger_row.assigned_by is not None:
            pool = ledger_row.pool or ledger_row.recipe
            quotas.admit_extend(ledger_row.assigned_by, pool, ledger_row.id, seconds)
        expires_at = leases.until(seconds)
        if not ledger.extend(ledger_row.id, expires_at, tags):  # released meanwhile
            db.session.refresh(ledger_row)
            raise ConflictError(describe_holder(assignment_to_dict(ledger_row)))
        until = utc_iso(expires_at)
        return {
            "id_vm": row["id_vm"],
            "id": row["id"],
            "result": f"Node {row['id_vm']} leased until {until}",
            "expires_at": until,
        }

    # An extend that empties the tags says so in the history ({}).
    reference = {"id_vm": node, "hostname": hostname, "tags": tags}
    return _audited("extend", cloud, caller, reference, False, extend, find=_known)[0]
