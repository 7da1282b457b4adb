"""Changes of a cloud's firewall (security groups) and storage (volumes)."""

from ..clouds import Cloud, firewall, volumes


def create_security_group(cloud: Cloud, name: str, description: str) -> dict:
    """Create a security group; ``{"group": GROUP}``.

    :raises ConflictError: a group of that name exists.
    :raises NotSupportedError: the cloud's driver has no security groups.
    """
    return {"group": firewall.create_security_group(cloud, name, description)}


def delete_security_group(cloud: Cloud, group: str) -> dict:
    """Delete a security group; ``{"result": "Group <id> deleted"}``.

    :raises NotFoundError: no such group.
    :raises NotSupportedError: the cloud's driver has no security groups.
    """
    return {"result": f"Group {firewall.delete_security_group(cloud, group)} deleted"}


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
