"""Nodes (VMs) of one cloud: list, find, start, destroy, reboot and power."""

from libcloud.compute.types import NodeState

from .. import serializers
from ..errors import AmbiguousHostnameError, InvalidRequestError, NotFoundError
from . import firewall
from .cloud import Cloud
from .lookups import node_by_id, nodes_by_name, takes

# Node states as libcloud's drivers report them, for the code outside clouds/ that reads a
# listed node's state (the pool manager, the reconcile).
RUNNING, TERMINATED, ERROR = NodeState.RUNNING, NodeState.TERMINATED, NodeState.ERROR
STOPPED, SUSPENDED = NodeState.STOPPED, NodeState.SUSPENDED

# action of /vm/action/<action> -> (driver method, verb for messages)
POWER_ACTIONS = {
    "reboot": ("reboot_node", "reboot"),
    "poweron": ("start_node", "power on"),
    "poweroff": ("stop_node", "power off"),
}


def list_nodes(cloud: Cloud) -> list[dict]:
    """Every node of the cloud, as NODE dicts."""
    return [serializers.node_to_dict(node) for node in cloud.call_driver("list_nodes")]


def find_node(cloud: Cloud, node_id: str | None = None, hostname: str | None = None):
    """The libcloud node with this id, or else this name: one request where the driver
    can ask for one node.

    :raises NotFoundError: no such node.
    :raises AmbiguousHostnameError: several live nodes have that name.
    """
    if node_id is not None:
        node = cloud.with_driver("node lookup", lambda driver: node_by_id(driver, node_id))
        if node is None:
            raise NotFoundError(f"no useful node id here: {node_id}")
        return node
    nodes = cloud.with_driver("node lookup", lambda driver: nodes_by_name(driver, hostname))
    if not nodes:
        raise NotFoundError(f"no useful node id here: no node is called {hostname}")
    if len(nodes) > 1:
        raise AmbiguousHostnameError(hostname, [node.id for node in nodes])
    return nodes[0]


def get_node(cloud: Cloud, node_id: str | None = None, hostname: str | None = None) -> dict:
    """One node, by its id or its name, as a NODE dict.

    :raises NotFoundError: no such node.
    :raises AmbiguousHostnameError: several live nodes have that name.
    """
    return serializers.node_to_dict(find_node(cloud, node_id, hostname))


def start_node(
    cloud: Cloud,
    name: str,
    image: str,
    size: str,
    keyname: str | None = None,
    metadata: dict | None = None,
    location: str | None = None,
    security_groups: list[str] | None = None,
) -> dict:
    """Create a node and return it as a NODE dict.

    ``keyname`` and ``metadata`` reach the driver as ``ex_keyname`` and
    ``ex_metadata``, and only where its ``create_node`` takes them.

    :raises InvalidRequestError: an unknown image, size or location, or an
        option the driver cannot honour.
    :raises CloudError: the cloud failed.
    """
    options = {
        "ex_keyname": keyname,
        "ex_metadata": metadata,
        "location": location,
        "ex_security_groups": security_groups,
    }
    options = {key: value for key, value in options.items() if value is not None}
    driver = cloud.driver
    for key in options:
        if not takes(driver.create_node, key):
            field = key.removeprefix("ex_")
            raise InvalidRequestError(f"{field}: the {driver.name} driver does not take it")
    if location is not None:
        options["location"] = cloud.location(location)
    if security_groups is not None:
        options["ex_security_groups"] = firewall.start_option(cloud, security_groups)
    node = cloud.call_driver(
        "create_node", name=name, image=cloud.image(image), size=cloud.size(size), **options
    )
    return serializers.node_to_dict(node)


def destroy_node(cloud: Cloud, node_id: str | None = None, hostname: str | None = None) -> str:
    """Destroy the node; return its id.

    :raises NotFoundError: no such node.
    :raises CloudError: the cloud refused.
    """
    return destroy(cloud, find_node(cloud, node_id, hostname))


def destroy(cloud: Cloud, node) -> str:
    """Destroy the libcloud node ``find_node`` found; return its id.

    :raises CloudError: the cloud refused.
    """
    cloud.confirm("destroy", f"node {node.id}", cloud.call_driver("destroy_node", node))
    return str(node.id)


def power_node(
    cloud: Cloud, action: str, node_id: str | None = None, hostname: str | None = None
) -> str:
    """Reboot, power on or power off the node (``POWER_ACTIONS``); return its id.

    :raises NotFoundError: no such node.
    :raises NotSupportedError: the driver cannot do it.
    """
    method, verb = POWER_ACTIONS[action]
    node = find_node(cloud, node_id, hostname)
    cloud.confirm(verb, f"node {node.id}", cloud.call_driver(method, node))
    return str(node.id)
