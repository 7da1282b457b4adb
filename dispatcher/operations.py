"""The changes the API makes: each a use case over one cloud, and the bookkeeping.

Views call these for whatever changes a cloud or an assignment; reads without side
effects call the resource modules of ``clouds`` (and the bookkeeping) directly.
Each takes the ``Cloud`` its request resolved once, and returns the answer's fields.
"""

from functools import partial

from flask import current_app

from . import bookkeeping, history
from .bookkeeping.base import describe_holder
from .clouds import Cloud, firewall, nodes, volumes
from .errors import CloudError, ConflictError, DispatcherError, NotFoundError
from .extensions import db
from .models import ASSIGNED, FREE

# action of /vm/action/<action> -> the past tense its answer uses
POWER_RESULTS = {"reboot": "rebooted", "poweron": "powered on", "poweroff": "powered off"}


def start_vm(cloud: Cloud, vm_type: str | None = None, **request) -> dict:
    """Start a VM from ``name``, ``image``, ``size`` and the options; ``{"nodes": NODE}``.

    The local ledger records it as free, for ``vm_type`` if given.

    :raises InvalidRequestError: unknown image, size or location; an option the
        cloud's driver cannot honour.
    :raises CloudError: the cloud failed.
    """
    node = nodes.start_node(cloud, **request)
    bookkeeping.backend().register(cloud.name, node, vm_type)
    return {"nodes": node}


def stop_vm(
    cloud: Cloud,
    caller: str,
    node: str | None = None,
    hostname: str | None = None,
    force: bool = False,
) -> dict:
    """Destroy the VM named by its id or hostname; ``{"result": "Node <id> deleted"}``.

    A VM assigned to someone is destroyed only with ``force``; the refusal, and the
    forced end, are in the history with the holder.

    :raises NotFoundError: no such node.
    :raises ConflictError: the VM is assigned and ``force`` is not given.
    :raises BookkeepingUnavailableError: Cistern cannot be reached (nothing changed).
    :raises CloudError: the cloud failed.
    """
    found = nodes.find_node(cloud, node, hostname)
    keeper = bookkeeping.backend()
    row = keeper.find(cloud.name, node_id=str(found.id))
    holder = row if row is not None and row["status"] == ASSIGNED else None
    entry = {"cloud": cloud.name, "action": "stop", "caller": caller, "id_vm": str(found.id)}
    if holder is not None:
        entry.update(hostname=found.name, user=holder["user"], vm_type=holder["recipe"])
        if not force:
            message = f'{describe_holder(holder)}: give "force": true to stop it anyway'
            history.record(**entry, outcome="409", message=message)
            raise ConflictError(message)
    node_id = nodes.destroy(cloud, found)
    keeper.forget(cloud.name, node_id)
    result = f"Node {node_id} deleted"
    if holder is not None:
        history.record(
            **entry, outcome="ok", message=f"{result}; forced, it was {describe_holder(holder)}"
        )
    return {"result": result}


def power_vm(cloud: Cloud, action: str, node: str | None = None, hostname=None) -> dict:
    """Reboot, power on or power off a VM; ``{"result": "Node <id> rebooted"}`` and the like.

    :raises NotFoundError: no such node.
    :raises NotSupportedError: the cloud's driver cannot do it.
    """
    node_id = nodes.power_node(cloud, action, node_id=node, hostname=hostname)
    return {"result": f"Node {node_id} {POWER_RESULTS[action]}"}


def create_security_group(cloud: Cloud, name: str, description: str) -> dict:
    """Create a security group; ``{"group": GROUP}``.

    :raises ConflictError: a group of that name exists.
    :raises NotSupportedError: the cloud's driver has no security groups.
    """
    return {"group": firewall.create_security_group(cloud, name, description)}


def change_port(
    cloud: Cloud,
    action: str,
    group: str,
    protocol: str,
    from_port: int,
    to_port: int | None = None,
    cidr: str = "0.0.0.0/0",
) -> dict:
    """Open or close a port range of a group; ``{"group": GROUP, "result": ...}``.

    Opening what is open already is no error; closing what is not open is.

    :raises NotFoundError: no such group; no such rule to close.
    :raises NotSupportedError: the cloud's driver has no security groups.
    """
    rule = firewall.rule(protocol, from_port, to_port, cidr)
    if action == "open":
        group_now, changed = firewall.open_port(cloud, group, rule)
        return {"group": group_now, "result": "opened" if changed else "already open"}
    return {"group": firewall.close_port(cloud, group, rule), "result": "closed"}


def create_volume(cloud: Cloud, **volume) -> dict:
    """Create a volume of ``size`` GB; ``{"volume": VOLUME}``.

    :raises NotSupportedError: the cloud's driver has no volumes.
    """
    return {"volume": volumes.create_volume(cloud, **volume)}


def attach_volume(cloud: Cloud, volume: str, node=None, hostname=None, device=None) -> dict:
    """Attach a volume to a node; ``{"result": "Volume <id> attached to node <id>"}``.

    :raises NotFoundError: no such volume or node.
    """
    volume_id, node_id = volumes.attach_volume(cloud, volume, node, hostname, device)
    return {"result": f"Volume {volume_id} attached to node {node_id}"}


def detach_volume(cloud: Cloud, volume: str) -> dict:
    """Detach a volume; ``{"result": "Volume <id> detached"}``.

    :raises NotFoundError: no such volume.
    """
    return {"result": f"Volume {volumes.detach_volume(cloud, volume)} detached"}


def destroy_volume(cloud: Cloud, volume: str) -> dict:
    """Destroy a volume; ``{"result": "Volume <id> destroyed"}``.

    :raises NotFoundError: no such volume.
    """
    return {"result": f"Volume {volumes.destroy_volume(cloud, volume)} destroyed"}


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
        if row["status"] == ASSIGNED and "user" not in reference:
            entry.update(user=row["user"], vm_type=row["recipe"])  # whom a release frees
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
