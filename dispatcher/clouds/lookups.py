"""Finding one image or node with as few calls to the cloud as its driver allows.

The original listed every image to find one, and every node to stop one; a
public EC2 region offers thousands of images. Each function here takes the
cheapest way the driver offers and falls back to a listing only where there
is no other.
"""

import inspect

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import LibcloudError
from libcloud.compute.types import NodeState
from libcloud.storage.types import ObjectDoesNotExistError

# HTTP statuses with which providers say that an id names nothing (EC2 answers
# 400 InvalidAMIID.NotFound / InvalidInstanceID.Malformed, OpenStack 404).
_NOT_FOUND_STATUSES = {400, 404}


def takes(function, parameter: str) -> bool:
    """Whether ``function`` names the keyword ``parameter``.

    A catch-all ``**kwargs`` does not count: a driver may swallow what it does not use.
    """
    return parameter in inspect.signature(function).parameters


def requires(function, parameter: str) -> bool:
    """Whether ``function`` has the parameter ``parameter`` without a default."""
    found = inspect.signature(function).parameters.get(parameter)
    return found is not None and found.default is inspect.Parameter.empty


def _names_nothing(exc: Exception) -> bool:
    # Some compute drivers (Azure ARM) raise the storage API's "no such object".
    if isinstance(exc, IndexError | KeyError | ObjectDoesNotExistError):
        return True
    status = getattr(exc, "code", None) or getattr(exc, "http_code", None)
    return isinstance(exc, BaseHTTPError | LibcloudError) and status in _NOT_FOUND_STATUSES


def _by_id(items, wanted: str):
    return next((item for item in items if str(item.id) == wanted), None)


def image_by_id(driver, image_id: str):
    """The image ``image_id``, or None: one filtered request where the driver has get_image."""
    try:
        return driver.get_image(image_id)
    except NotImplementedError:
        return _by_id(driver.list_images(), image_id)
    except Exception as exc:
        if _names_nothing(exc):
            return None
        raise


def node_by_id(driver, node_id: str):
    """The node ``node_id``, or None: one request where the driver can ask for one node."""
    try:
        if takes(driver.list_nodes, "ex_node_ids"):  # EC2: DescribeInstances by id
            return _by_id(driver.list_nodes(ex_node_ids=[node_id]), node_id)
        if hasattr(driver, "ex_get_node_details"):  # OpenStack: GET /servers/<id>
            return driver.ex_get_node_details(node_id)
    except Exception as exc:
        if _names_nothing(exc):
            return None
        raise
    return _by_id(driver.list_nodes(), node_id)


def nodes_by_name(driver, hostname: str) -> list:
    """The live nodes called ``hostname``: filtered by the cloud where it can filter."""
    if takes(driver.list_nodes, "ex_filters"):  # EC2 keeps the name in the Name tag
        candidates = driver.list_nodes(ex_filters={"tag:Name": hostname})
    else:
        candidates = driver.list_nodes()
    return [
        node for node in candidates if node.name == hostname and node.state != NodeState.TERMINATED
    ]


def volume_by_id(driver, volume_id: str):
    """The volume ``volume_id``, or None: filtered by the cloud where it can filter."""
    try:
        if takes(driver.list_volumes, "ex_filters"):  # EC2: DescribeVolumes by id
            return _by_id(driver.list_volumes(ex_filters={"volume-id": volume_id}), volume_id)
        if hasattr(driver, "ex_get_volume"):  # OpenStack: GET /os-volumes/<id>
            return driver.ex_get_volume(volume_id)
    except Exception as exc:
        if _names_nothing(exc):
            return None
        raise
    return _by_id(driver.list_volumes(), volume_id)
