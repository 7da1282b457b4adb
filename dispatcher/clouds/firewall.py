"""The firewall of one cloud: its security groups and the port ranges they let in."""

from ..errors import ConflictError, InvalidRequestError, NotFoundError
from . import groups
from .cloud import Cloud
from .groups import Rule

WHAT = "security groups"  # how calls and a driver without them are named


def rule(protocol: str, from_port: int, to_port: int | None, cidr: str) -> Rule:
    """A port range to open or close; ``to_port`` defaults to ``from_port``."""
    return Rule(protocol, from_port, from_port if to_port is None else to_port, cidr)


def list_security_groups(cloud: Cloud) -> list[dict]:
    """Every security group with its ingress rules.

    :raises NotSupportedError: the driver has no security groups.
    """
    return [group.as_dict() for group in _groups(cloud)]


def create_security_group(cloud: Cloud, name: str, description: str) -> dict:
    """Create a security group; return it.

    :raises ConflictError: a group of that name exists.
    :raises NotSupportedError: the driver has no security groups.
    """
    if any(group.name == name for group in _groups(cloud)):
        raise ConflictError(f"a security group called {name} exists already")
    group_id = cloud.with_driver(
        WHAT, lambda driver: groups.create_group(driver, name, description)
    )
    return _group(cloud, group_id).as_dict()


def delete_security_group(cloud: Cloud, group: str) -> str:
    """Delete the security group whose id, or else name, is ``group``; return its id.

    :raises NotFoundError: no such group.
    :raises NotSupportedError: the driver has no security groups.
    :raises CloudError: the cloud refused (a group still in use, say).
    """
    found = _group(cloud, group)
    done = cloud.with_driver(WHAT, lambda driver: groups.delete_group(driver, found))
    cloud.confirm("delete security group", found.id, done)
    return found.id


def open_port(cloud: Cloud, group: str, wanted: Rule) -> tuple[dict, bool]:
    """Let ``wanted`` in through the group; return the group and whether it changed.

    :raises NotFoundError: no such group.
    :raises NotSupportedError: the driver has no security groups.
    """
    _check_network(cloud, wanted)
    found = _group(cloud, group)
    if wanted in found.rules:
        return found.as_dict(), False
    cloud.with_driver(WHAT, lambda driver: groups.open_rule(driver, found, wanted))
    return _group(cloud, found.id).as_dict(), True


def close_port(cloud: Cloud, group: str, wanted: Rule) -> dict:
    """Remove ``wanted`` from the group; return the group.

    :raises NotFoundError: no such group, or the group has no such rule.
    :raises NotSupportedError: the driver has no security groups.
    """
    _check_network(cloud, wanted)
    found = _group(cloud, group)
    if wanted not in found.rules:
        raise NotFoundError(
            f"group {found.name} has no rule {wanted.protocol} {wanted.from_port}-{wanted.to_port}"
            f" from {wanted.cidr}"
        )
    cloud.with_driver(WHAT, lambda driver: groups.close_rule(driver, found, wanted))
    return _group(cloud, found.id).as_dict()


def start_option(cloud: Cloud, names: list[str]) -> list:
    """What the driver's create_node takes as ``ex_security_groups`` for these names.

    :raises InvalidRequestError: a group the cloud does not have.
    """
    value, missing = cloud.with_driver(WHAT, lambda driver: groups.start_groups(driver, names))
    if missing:
        raise InvalidRequestError(f"security_groups: no group {', '.join(missing)}")
    return value


def _check_network(cloud: Cloud, wanted: Rule) -> None:
    driver = cloud.driver
    if not groups.takes_network(driver, wanted.cidr):
        raise InvalidRequestError(f"cidr: the {driver.name} driver takes IPv4 networks only")


def _groups(cloud: Cloud) -> list[groups.Group]:
    return cloud.with_driver(WHAT, groups.list_groups)


def _group(cloud: Cloud, wanted: str) -> groups.Group:
    found = _groups(cloud)
    group = next((group for group in found if group.id == wanted), None) or next(
        (group for group in found if group.name == wanted), None
    )
    if group is None:
        raise NotFoundError(f"no security group {wanted}")
    return group
