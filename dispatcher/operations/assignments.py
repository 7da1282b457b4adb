"""Assigning and releasing VMs: the bookkeeping, the cloud and the history together."""

from functools import partial

from flask import current_app

from .. import bookkeeping, history
from ..bookkeeping.base import describe_holder
from ..clouds import Cloud, nodes
from ..errors import CloudError, ConflictError, DispatcherError, NotFoundError
from ..extensions import db
from ..models import ASSIGNED, FREE


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

    With RELEASE_KEEPS_NODE the VM is kept (and free for the next assign).

    :raises NotFoundError: neither the bookkeeping nor the cloud has the VM.
    :raises ConflictError: the VM is not assigned.
    :raises BookkeepingUnavailableError: Cistern cannot be reached (nothing changed).
    :raises CloudError: released, but the cloud failed to destroy the VM.
    """
    keep = current_app.config["RELEASE_KEEPS_NODE"]
    then = "" if keep else " and deleted"

    def release(row: dict) -> dict:
        if row["status"] != ASSIGNED:
            raise ConflictError(describe_holder(row))
        if emulate:
            return _dry_run(row, f"would be released{then} (emulated)")
        return bookkeeping.backend().release(cloud.name, row)

    answer, entry = _audited(
        "release", cloud, caller, {"id_vm": node, "hostname": hostname}, emulate, release
    )
    if emulate or keep:
        return answer
    node_id = str(answer["id_vm"])
    result = f"{answer['result']}{then}"
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
    return {**answer, "result": f"{answer['result']}{then}"}


def sync_ledger(cloud: Cloud) -> dict:
    """Bring the local ledger in line with the cloud: ``{"registered": n, "faulty": m}``.

    :raises InvalidRequestError: the bookkeeping is not the local ledger.
    :raises CloudError: the cloud failed.
    """
    return bookkeeping.backend().sync(cloud.name, partial(nodes.list_nodes, cloud))
