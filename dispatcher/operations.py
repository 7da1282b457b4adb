"""Use cases over the clouds (and, later, the bookkeeping): what the VM views call."""

from . import clouds

# action of /vm/action/<action> -> the past tense its answer uses
POWER_RESULTS = {"reboot": "rebooted", "poweron": "powered on", "poweroff": "powered off"}


def start_vm(cloud: str | None, **request) -> dict:
    """Start a VM from ``name``, ``image``, ``size`` and the options; ``{"nodes": NODE}``.

    :raises InvalidRequestError: unknown image, size or location; an option the
        cloud's driver cannot honour.
    :raises CloudError: the cloud failed.
    """
    return {"nodes": clouds.service().start_node(cloud, **request)}


def stop_vm(cloud: str | None, node: str | None = None, hostname: str | None = None) -> dict:
    """Destroy the VM named by its id or hostname; ``{"result": "Node <id> deleted"}``.

    :raises NotFoundError: no such node.
    :raises CloudError: the cloud failed.
    """
    node_id = clouds.service().destroy_node(cloud, node_id=node, hostname=hostname)
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
