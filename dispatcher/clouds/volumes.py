"""Volumes (block storage) of one cloud: list, create, attach, detach and destroy."""

from .. import serializers
from ..errors import InvalidRequestError, NotFoundError
from .cloud import Cloud
from .lookups import requires, volume_by_id
from .nodes import find_node

WHAT = "volumes"  # how calls and a driver without them are named


def list_volumes(cloud: Cloud) -> list[dict]:
    """Every volume of the cloud.

    :raises NotSupportedError: the driver has no volumes.
    """
    volumes = cloud.with_driver(WHAT, lambda driver: driver.list_volumes())
    return [serializers.volume_to_dict(volume) for volume in volumes]


def create_volume(cloud: Cloud, name: str, size: int, location: str | None = None) -> dict:
    """Create a volume of ``size`` GB; return it.

    :raises NotSupportedError: the driver has no volumes.
    :raises InvalidRequestError: an unknown location.
    """
    options = {"location": cloud.location(location)} if location else {}
    volume = cloud.with_driver(WHAT, lambda driver: driver.create_volume(size, name, **options))
    return serializers.volume_to_dict(volume)


def attach_volume(
    cloud: Cloud,
    volume_id: str,
    node_id: str | None = None,
    hostname: str | None = None,
    device: str | None = None,
) -> tuple[str, str]:
    """Attach the volume to the node; return both ids.

    :raises NotFoundError: no such volume or node.
    :raises InvalidRequestError: the driver needs a device and none was given.
    """
    driver = cloud.driver
    if device is None and requires(driver.attach_volume, "device"):
        raise InvalidRequestError(f"device: the {driver.name} driver needs one")
    volume = _volume(cloud, volume_id)
    node = find_node(cloud, node_id, hostname)
    options = {"device": device} if device is not None else {}
    done = cloud.call_driver("attach_volume", node, volume, **options)
    cloud.confirm("attach volume", volume_id, done)
    return str(volume.id), str(node.id)


def detach_volume(cloud: Cloud, volume_id: str) -> str:
    """Detach the volume from its node; return its id.

    :raises NotFoundError: no such volume.
    """
    volume = _volume(cloud, volume_id)
    cloud.confirm("detach volume", volume_id, cloud.call_driver("detach_volume", volume))
    return str(volume.id)


def destroy_volume(cloud: Cloud, volume_id: str) -> str:
    """Destroy the volume; return its id.

    :raises NotFoundError: no such volume.
    """
    volume = _volume(cloud, volume_id)
    cloud.confirm("destroy volume", volume_id, cloud.call_driver("destroy_volume", volume))
    return str(volume.id)


def _volume(cloud: Cloud, volume_id: str):
    volume = cloud.with_driver(WHAT, lambda driver: volume_by_id(driver, volume_id))
    if volume is None:
        raise NotFoundError(f"no volume {volume_id}")
    return volume
