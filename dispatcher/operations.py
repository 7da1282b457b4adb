"""Use cases over the clouds and the bookkeeping: what the VM views call."""

from flask import current_app

from . import bookkeeping, clouds, metrics
from .bookkeeping.base import describe_holder
from .clouds import firewall_rule
from .errors import (
    CloudError,
    ConflictError,
    DispatcherError,
    InvalidRequestError,
    NotFoundError,
)
from .extensions import db
from .models import ASSIGNED, FREE, AuditEntry
from .requestlog import current_request_id
from .serializers import audit_entry_to_dict

# action of /vm/action/<action> -> the past tense its answer uses
POWER_RESULTS = {"reboot": "rebooted", "poweron": "powered on", "poweroff": "powered off"}
HISTORY_LIMIT_MAX = 1000


def start_vm(cloud: str | None, vm_type: str | None = None, **request) -> dict:
    """Start a VM from ``name``, ``image``, ``size`` and the options; ``{"nodes": NODE}``.

    The local ledger records it as free, for ``vm_type`` if given.

    :raises InvalidRequestError: unknown image, size or location; an option the
        cloud's driver cannot honour.
    :raises CloudError: the cloud failed.
    """
    node = clouds.service().start_node(cloud, **request)
    keeper = bookkeeping.backend()
    if keeper.registers_nodes:
        keeper.register(clouds.service().cloud_name(cloud), node, vm_type)
    return {"nodes": node}


def stop_vm(cloud: str | None, node: str | None = None, hostname: str | None = None) -> dict:
    """Destroy the VM named by its id or hostname; ``{"result": "Node <id> deleted"}``.

    :raises NotFoundError: no such node.
    :raises CloudError: the cloud failed.
    """
    node_id = clouds.service().destroy_node(cloud, node_id=node, hostname=hostname)
    bookkeeping.backend().forget(clouds.service().cloud_name(cloud), node_id)
    return {"result": f"Node {node_id} deleted"}


def power_vm(cloud: str | None, action: str, node=None, hostname=None) -> dict:
    """Reboot, power on or power off a VM; ``{"result": "Node <id> rebooted"}`` and the like.

    :raises NotFoundError: no such node.
    :raises NotSupportedError: the cloud's driver cannot do it.
    """
    node_id = clouds.service().power_node(cloud, action, node_id=node, hostname=hostname)
    return {"result": f"Node {node_id} {POWER_RESULTS[action]}"}


def node_details(cloud: str | None, node_id: str) -> dict:
    """One node of the cloud; ``{"node": NODE}``.

    :raises NotFoundError: no such node.
    """
    return {"node": clouds.service().get_node(cloud, node_id=node_id)}


def create_security_group(cloud: str | None, name: str, description: str) -> dict:
    """Create a security group; ``{"group": GROUP}``.

    :raises ConflictError: a group of that name exists.
    :raises NotSupportedError: the cloud's driver has no security groups.
    """
    return {"group": clouds.service().create_security_group(cloud, name, description)}


def change_port(
    cloud: str | None,
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
    rule = firewall_rule(protocol, from_port, to_port, cidr)
    service = clouds.service()
    if action == "open":
        changed_group, changed = service.open_port(cloud, group, rule)
        return {"group": changed_group, "result": "opened" if changed else "already open"}
    return {"group": service.close_port(cloud, group, rule), "result": "closed"}


def create_volume(cloud: str | None, **volume) -> dict:
    """Create a volume of ``size`` GB; ``{"volume": VOLUME}``.

    :raises NotSupportedError: the cloud's driver has no volumes.
    """
    return {"volume": clouds.service().create_volume(cloud, **volume)}


def attach_volume(cloud: str | None, volume: str, node=None, hostname=None, device=None) -> dict:
    """Attach a volume to a node; ``{"result": "Volume <id> attached to node <id>"}``.

    :raises NotFoundError: no such volume or node.
    """
    volume_id, node_id = clouds.service().attach_volume(
        cloud, volume, node_id=node, hostname=hostname, device=device
    )
    return {"result": f"Volume {volume_id} attached to node {node_id}"}


def detach_volume(cloud: str | None, volume: str) -> dict:
    """Detach a volume; ``{"result": "Volume <id> detached"}``.

    :raises NotFoundError: no such volume.
    """
    return {"result": f"Volume {clouds.service().detach_volume(cloud, volume)} detached"}


def destroy_volume(cloud: str | None, volume: str) -> dict:
    """Destroy a volume; ``{"result": "Volume <id> destroyed"}``.

    :raises NotFoundError: no such volume.
    """
    return {"result": f"Volume {clouds.service().destroy_volume(cloud, volume)} destroyed"}


def _resolve(cloud: str, node: str | None, hostname: str | None, emulate: bool) -> dict:
    """The bookkeeping row of the VM; a VM the cloud has and the local ledger lacks is
    registered as free first (only pictured, in a dry run)."""
    keeper = bookkeeping.backend()
    row = keeper.find(cloud, node_id=node, hostname=hostname)
    if row is not None:
        return row
    if not keeper.registers_nodes:
        raise NotFoundError(f"no useful node id here: the bookkeeping has no {node or hostname}")
    found = clouds.service().get_node(cloud, node_id=node, hostname=hostname)
    if emulate:
        return {"id": None, "id_vm": found["id"], "hostname": found["name"], "status": FREE}
    return keeper.register(cloud, found)


def _record(**entry) -> None:
    db.session.add(AuditEntry(**entry, request_id=current_request_id()))
    db.session.commit()
    metrics.count_assignment(entry["cloud"], entry["action"], entry["outcome"])


def _audited(action: str, cloud: str | None, caller: str, reference: dict, emulate: bool, change):
    """Resolve the VM, run ``change(cloud, row)`` and record the outcome in the history.

    A success is committed together with its audit entry; a failure is rolled back
    and then recorded. A dry run records nothing.
    """
    cloud = clouds.service().cloud_name(cloud)
    entry = {"cloud": cloud, "action": action, "caller": caller, **reference}
    try:
        row = _resolve(cloud, reference.get("id_vm"), reference.get("hostname"), emulate)
        entry.update(id_vm=row["id_vm"], hostname=row["hostname"])
        answer = change(cloud, row)
    except DispatcherError as exc:
        db.session.rollback()
        if not emulate:
            _record(**entry, outcome=str(exc.status), message=exc.message[:1000])
        raise
    if not emulate:
        _record(**entry, outcome="ok", message=answer["result"])
    return answer


def _dry_run(row: dict, what: str) -> dict:
    return {"id_vm": row["id_vm"], "id": row["id"], "result": f"Node {row['id_vm']} {what}"}


def assign_vm(
    cloud: str | None,
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

    def assign(cloud: str, row: dict) -> dict:
        if row["status"] != FREE:
            raise ConflictError(describe_holder(row))
        if emulate:
            return _dry_run(row, f"would be assigned to {user} (emulated)")
        return bookkeeping.backend().assign(cloud, row, user, vm_type)

    reference = {"id_vm": node, "hostname": hostname, "user": user, "vm_type": vm_type}
    return _audited("assign", cloud, caller, reference, emulate, assign)


def release_vm(
    cloud: str | None,
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

    def release(cloud: str, row: dict) -> dict:
        if row["status"] != ASSIGNED:
            raise ConflictError(describe_holder(row))
        if emulate:
            return _dry_run(row, f"would be released{then} (emulated)")
        return bookkeeping.backend().release(cloud, row)

    reference = {"id_vm": node, "hostname": hostname}
    answer = _audited("release", cloud, caller, reference, emulate, release)
    if emulate or keep:
        return answer
    try:
        clouds.service().destroy_node(cloud, node_id=str(answer["id_vm"]))
    except NotFoundError:
        pass  # gone already: what release wanted
    except DispatcherError as exc:
        raise CloudError(f"{answer['result']}, but deleting it failed: {exc.message}") from exc
    bookkeeping.backend().forget(clouds.service().cloud_name(cloud), str(answer["id_vm"]))
    return {**answer, "result": f"{answer['result']}{then}"}


def sync_ledger(cloud: str | None) -> dict:
    """Bring the local ledger in line with the cloud: ``{"registered": n, "faulty": m}``.

    :raises InvalidRequestError: the bookkeeping is not the local ledger.
    :raises CloudError: the cloud failed.
    """
    keeper = bookkeeping.backend()
    if not keeper.registers_nodes:
        raise InvalidRequestError(
            "ledger-sync works on the local ledger (ASSIGNMENT_BACKEND=local)"
        )
    name = clouds.service().cloud_name(cloud)
    return keeper.sync(name, clouds.service().list_nodes(name))


def assignment_status(cloud: str | None) -> dict:
    """The VMs of the cloud that are free or assigned; ``{"nodes": [ASSIGNMENT]}``.

    :raises BookkeepingUnavailableError: Cistern cannot be reached.
    """
    return {"nodes": bookkeeping.backend().nodes(clouds.service().cloud_name(cloud))}


def assignment_history(cloud: str | None, limit: int) -> dict:
    """The cloud's assigns and releases, newest first; ``{"history": [...]}``."""
    entries = db.session.scalars(
        db.select(AuditEntry)
        .where(AuditEntry.cloud == clouds.service().cloud_name(cloud))
        .order_by(AuditEntry.id.desc())
        .limit(min(limit, HISTORY_LIMIT_MAX))
    )
    return {"history": [audit_entry_to_dict(entry) for entry in entries]}
