"""VMs started, stopped (an assigned one only when forced) and powered."""

from .. import bookkeeping, history
from ..bookkeeping.base import describe_holder
from ..clouds import Cloud, nodes
from ..errors import ConflictError
from ..extensions import db
from ..models import ASSIGNED
from .ending import Wording, end_vm

# How the history tells of a forced stop, ``{what}`` saying whose VM it was.
FORCED_STOP = Wording(
    destroyed="Node {node} deleted; forced, it was {what}",
    gone="Node {node} deleted; forced, it was {what}",
    failed="Node {node} not deleted (forced, it was {what}): {error}",
)

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
    db.session.commit()
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
    entry = None
    if holder is not None:
        entry = {"cloud": cloud.name, "action": "stop", "caller": caller, "id_vm": str(found.id)}
        entry.update(hostname=found.name, user=holder["user"], vm_type=holder["recipe"])
        if not force:
            message = f'{describe_holder(holder)}: give "force": true to stop it anyway'
            history.record(**entry, outcome="409", message=message)
            db.session.commit()
            raise ConflictError(message)
    # Only a forced stop of an assigned VM is in the history, with whose VM it was.
    what = describe_holder(holder) if holder is not None else ""
    ended = end_vm(cloud, found, what, entry, FORCED_STOP)
    return {"result": f"Node {ended.node_id} deleted"}


def power_vm(cloud: Cloud, action: str, node: str | None = None, hostname=None) -> dict:
    """Reboot, power on or power off a VM; ``{"result": "Node <id> rebooted"}`` and the like.

    :raises NotFoundError: no such node.
    :raises NotSupportedError: the cloud's driver cannot do it.
    """
    node_id = nodes.power_node(cloud, action, node_id=node, hostname=hostname)
    return {"result": f"Node {node_id} {POWER_RESULTS[action]}"}
