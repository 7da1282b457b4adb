"""Assigning and releasing VMs: the bookkeeping, the cloud and the history together."""

import math
import time
from functools import partial

from flask import current_app

from .. import bookkeeping, clouds, history, metrics, pools
from ..bookkeeping.base import describe_holder
from ..clouds import Cloud, nodes
from ..errors import CloudError, ConflictError, DispatcherError, NotFoundError, PoolEmptyError
from ..extensions import db
from ..models import ASSIGNED, FREE
from ..pools import ledger
from ..serializers import as_utc, utc_iso


def _resolve(cloud: Cloud, node: str | None, hostname: str | None, emulate: bool) -> dict:
    """The bookkeeping row of the VM; one it lacks, the backend may adopt from the cloud."""
    keeper = bookkeeping.backend()
    row = keeper.find(cloud.name, node_id=node, hostname=hostname)
    if row is not None:
        return row
    fetch = partial(nodes.get_node, cloud, node_id=node, hostname=hostname)
    return keeper.adopt(cloud.name, node or hostname, fetch, emulate)


def _audited(action: str, cloud: Cloud, caller: str, reference: dict, emulate: bool, change):
    """Resolve the VM, run ``change(row)`` and record the outcome in the history;
    the answer and its history entry (None in a dry run).

    A success is committed together with its audit entry; a failure is rolled back
    and then recorded. A dry run records nothing.
    """
    entry = {"cloud": cloud.name, "action": action, "caller": caller, **reference}
    try:
        row = _resolve(cloud, reference.get("id_vm"), reference.get("hostname"), emulate)
        entry.update(id_vm=row["id_vm"], hostname=row["hostname"])
        if action == "release" and row["status"] == ASSIGNED:
            entry.update(user=row["user"], vm_type=row["recipe"])  # whom it frees
        answer = change(row)
    except DispatcherError as exc:
        db.session.rollback()
        if not emulate:
            history.record(**entry, outcome=str(exc.status), message=exc.message[:1000])
        raise
    if emulate:
        return answer, None
    return answer, history.record(**entry, outcome="ok", message=answer["result"])


def _dry_run(row: dict, what: str) -> dict:
    return {"id_vm": row["id_vm"], "id": row["id"], "result": f"Node {row['id_vm']} {what}"}


def assign_vm(
    cloud: Cloud,
    caller: str,
    user: str,
    vm_type: str,
    node: str | None = None,
    hostname: str | None = None,
    emulate: bool = False,
) -> dict:
    """Give a free VM to ``user`` for ``vm_type``; ``{"id_vm", "id", "result"}``.

    :raises NotFoundError: neither the bookkeeping nor the cloud has the VM.
    :raises ConflictError: the VM is not free; the message names the holder.
    :raises BookkeepingUnavailableError: Cistern cannot be reached.
    """

    def assign(row: dict) -> dict:
        if row["status"] != FREE:
            raise ConflictError(describe_holder(row))
        if emulate:
            return _dry_run(row, f"would be assigned to {user} (emulated)")
        return bookkeeping.backend().assign(cloud.name, row, user, vm_type)

    reference = {"id_vm": node, "hostname": hostname, "user": user, "vm_type": vm_type}
    return _audited("assign", cloud, caller, reference, emulate, assign)[0]


def release_vm(
    cloud: Cloud,
    caller: str,
    node: str | None = None,
    hostname: str | None = None,
    emulate: bool = False,
) -> dict:
    """Free an assigned VM, then destroy it; ``{"id_vm", "id", "result"}``.

    With RELEASE_KEEPS_NODE the VM is kept (and free for the next assign). A VM of a warm
    pool follows its pool's ``release``: ``reuse`` keeps it free in the pool; ``destroy``
    keeps it from being handed out (faulty) until it is destroyed, here or, should the
    cloud fail, by the pool manager.

    :raises NotFoundError: neither the bookkeeping nor the cloud has the VM.
    :raises ConflictError: the VM is not assigned.
    :raises BookkeepingUnavailableError: Cistern cannot be reached (nothing changed).
    :raises CloudError: released, but the cloud failed to destroy the VM.
    """
    keep = current_app.config["RELEASE_KEEPS_NODE"]

    def release(row: dict) -> dict:
        nonlocal keep
        if row["status"] != ASSIGNED:
            raise ConflictError(describe_holder(row))
        pool = pools.find(ledger.pool_of(cloud.name, row["id_vm"])) if pools.every() else None
        if pool is not None:
            keep = pool.release == "reuse"
        if emulate:
            then = "" if keep else " and deleted"
            return _dry_run(row, f"would be released{then} (emulated)")
        return bookkeeping.backend().release(cloud.name, row, retire=pool is not None and not keep)

    answer, entry = _audited(
        "release", cloud, caller, {"id_vm": node, "hostname": hostname}, emulate, release
    )
    if emulate or keep:
        return answer
    node_id = str(answer["id_vm"])
    result = f"{answer['result']} and deleted"
    try:
        nodes.destroy_node(cloud, node_id=node_id)
    except NotFoundError:
        result = f"{answer['result']}; the node was gone already"  # what release wanted
    except DispatcherError as exc:
        failure = CloudError(f"{answer['result']}, but deleting it failed: {exc.message}")
        history.amend(entry, str(failure.status), failure.message)
        raise failure from exc
    bookkeeping.backend().forget(cloud.name, node_id)
    history.amend(entry, "ok", result)
    return {**answer, "result": f"{answer['result']} and deleted"}


def sync_ledger(cloud: Cloud) -> dict:
    """Bring the local ledger in line with the cloud: ``{"registered": n, "faulty": m}``.

    :raises InvalidRequestError: the bookkeeping is not the local ledger.
    :raises CloudError: the cloud failed.
    """
    return bookkeeping.backend().sync(cloud.name, partial(nodes.list_nodes, cloud))


def assign_from_pool(
    cloud_name: str | None, caller: str, user: str, vm_type: str, emulate: bool = False
) -> dict:
    """Give a free VM of the pool ``vm_type`` to ``user``, on the cloud named if one is,
    else on any of the pool's clouds; ``{"id_vm", "id", "result", "cloud", "hostname",
    "public_ips", "private_ips"}``.

    :raises NotFoundError: no pool serves ``vm_type``, or it has no VMs on that cloud.
    :raises PoolEmptyError: the pool has no free VM there now (with Retry-After).
    """
    spec = pools.find(vm_type)
    if spec is None:
        raise NotFoundError(
            f"no valid node id nor hostname here, and no pool serves vm_type {vm_type}"
        )
    where = spec.cloud_names
    if cloud_name is not None:
        cloud = clouds.get(cloud_name)
        if cloud.name not in where:
            raise NotFoundError(f"pool {spec.name} keeps no VMs on cloud {cloud.name}")
        where = [cloud.name]
    started = time.perf_counter()
    if emulate:
        row = ledger.peek_free(spec.name, where)
    else:
        row = ledger.take_free(spec.name, where, user, vm_type)
    metrics.POOL_ASSIGN_SECONDS.labels(spec.name).observe(time.perf_counter() - started)
    if row is None:
        db.session.rollback()
        # The next pass of the manager is the soonest a VM can be free: in whole seconds,
        # as Retry-After takes them.
        retry_after = max(1, math.ceil(current_app.config["POOLS_INTERVAL"]))
        raise PoolEmptyError(_why_empty(spec, where, cloud_name is not None), retry_after)
    verb = f"would be assigned to {user} (emulated)" if emulate else "assigned"
    answer = {
        "id_vm": row.id_vm,
        "id": row.id,
        "result": f"Node {row.id_vm} {verb}",
        "cloud": row.cloud,
        "hostname": row.hostname,
        "public_ips": row.public_ips or [],
        "private_ips": row.private_ips or [],
    }
    if not emulate:
        entry = {"cloud": row.cloud, "action": "assign", "caller": caller, "user": user}
        entry.update(id_vm=row.id_vm, hostname=row.hostname, vm_type=vm_type)
        history.record(**entry, outcome="ok", message=answer["result"])  # commits the take
    return answer


def _why_empty(spec, where: list[str], named: bool) -> str:
    """Why a pool has no free VM (on the cloud the request ``named``): how many are
    booting, and its last failed refill."""
    counted = ledger.counts(spec.name)
    booting = sum(counted.get(cloud, {}).get("booting", 0) for cloud in where)
    place = f" on cloud {where[0]}" if named else ""
    message = f"pool {spec.name} has no free VM{place} now: {booting} booting"
    failures = [state for state in ledger.cloud_states(spec.name).values() if state.last_error]
    if failures:
        last = max(failures, key=lambda state: as_utc(state.last_error_at))
        when = utc_iso(last.last_error_at)
        message += f"; the last refill failed at {when} on {last.cloud}: {last.last_error}"
    return message
