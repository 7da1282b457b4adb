"""Security groups over the two shapes libcloud gives them: EC2's and OpenStack's.

libcloud has no common firewall API: EC2 (and Eucalyptus) drivers speak of groups
with ingress permissions, OpenStack drivers of groups with rule objects. Each
function here takes a driver and hides which of the two it is.
"""

import ipaddress
from dataclasses import dataclass, field

from ..shapes import INTEGER_OR_NULL, TEXT, TEXT_OR_NULL, describes, list_of


@dataclass(frozen=True)
class Rule:
    """One open port range: protocol, ports and the network allowed in."""

    protocol: str
    from_port: int | None
    to_port: int | None
    cidr: str | None

    @describes(
        "Rule",
        {
            "protocol": TEXT_OR_NULL,
            "from_port": INTEGER_OR_NULL,
            "to_port": INTEGER_OR_NULL,
            "cidr": TEXT_OR_NULL,
        },
    )
    def as_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "from_port": self.from_port,
            "to_port": self.to_port,
            "cidr": self.cidr,
        }


@dataclass
class Group:
    """A security group and its ingress rules; ``native`` is the driver's own object."""

    id: str
    name: str
    description: str | None
    rules: list[Rule] = field(default_factory=list)
    native: object = None

    @describes(
        "Group",
        {
            "id": TEXT,
            "name": TEXT_OR_NULL,
            "description": TEXT_OR_NULL,
            "rules": list_of(Rule.as_dict),
        },
    )
    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "rules": [rule.as_dict() for rule in self.rules],
        }


def network(cidr: str) -> str:
    """``cidr`` as the network it names, host bits cleared: ``10.1.2.3/8`` is ``10.0.0.0/8``.

    :raises ValueError: not an IPv4 or IPv6 network.
    """
    return str(ipaddress.ip_network(cidr, strict=False))


def _port(value) -> int | None:
    # -1 is "any" (ICMP, all protocols): EC2 sends it as text, Nova as a number.
    return None if value in (None, "", "-1", -1) else int(value)


def _network(cidr) -> str | None:
    return network(cidr) if cidr else None


def is_ec2_family(driver) -> bool:
    return hasattr(driver, "ex_get_security_groups") and hasattr(
        driver, "ex_authorize_security_group_ingress"
    )


def is_openstack_family(driver) -> bool:
    return hasattr(driver, "ex_create_security_group_rule")


def takes_network(driver, cidr: str | None) -> bool:
    """Whether the driver can open a rule for ``cidr``.

    libcloud's EC2 driver sends every network as an IPv4 range (IpRanges) and reads
    only those back, which EC2 refuses for an IPv6 network.
    """
    return not (is_ec2_family(driver) and cidr and ipaddress.ip_network(cidr).version == 6)


def _from_ec2(group) -> Group:
    rules = [
        Rule(rule["protocol"], _port(rule["from_port"]), _port(rule["to_port"]), _network(cidr))
        for rule in group.ingress_rules
        for cidr in rule.get("cidr_ips") or [None]
    ]
    return Group(group.id, group.name, group.extra.get("description"), rules, group)


def _openstack_rule(native) -> Rule:
    return Rule(
        native.ip_protocol,
        _port(native.from_port),
        _port(native.to_port),
        _network(native.ip_range),
    )


def _from_openstack(group) -> Group:
    rules = [_openstack_rule(rule) for rule in group.rules if rule.direction in (None, "ingress")]
    return Group(str(group.id), group.name, group.description, rules, group)


def list_groups(driver) -> list[Group]:
    """Every security group the driver sees.

    :raises NotImplementedError: the driver has no security groups.
    """
    if is_ec2_family(driver):
        return [_from_ec2(group) for group in driver.ex_get_security_groups()]
    if is_openstack_family(driver):
        return [_from_openstack(group) for group in driver.ex_list_security_groups()]
    raise NotImplementedError("security groups")


def create_group(driver, name: str, description: str) -> str:
    """Create a group; return its id.

    :raises NotImplementedError: the driver has no security groups.
    """
    if is_ec2_family(driver):
        return driver.ex_create_security_group(name, description)["group_id"]
    if is_openstack_family(driver):
        return str(driver.ex_create_security_group(name, description).id)
    raise NotImplementedError("security groups")


def delete_group(driver, group: Group) -> bool:
    """Delete ``group``; False where the driver says it did not."""
    if is_ec2_family(driver):
        return driver.ex_delete_security_group_by_id(group.id)
    return driver.ex_delete_security_group(group.native)


def open_rule(driver, group: Group, rule: Rule) -> None:
    """Add ``rule`` to ``group``."""
    if is_ec2_family(driver):
        driver.ex_authorize_security_group_ingress(
            group.id, rule.from_port, rule.to_port, cidr_ips=[rule.cidr], protocol=rule.protocol
        )
    else:
        driver.ex_create_security_group_rule(
            group.native, rule.protocol, rule.from_port, rule.to_port, cidr=rule.cidr
        )


def close_rule(driver, group: Group, rule: Rule) -> None:
    """Remove ``rule``, which ``group`` has, from it."""
    if is_ec2_family(driver):
        driver.ex_revoke_security_group_ingress(
            group.id, rule.from_port, rule.to_port, cidr_ips=[rule.cidr], protocol=rule.protocol
        )
        return
    native = next(
        candidate for candidate in group.native.rules if _openstack_rule(candidate) == rule
    )
    driver.ex_delete_security_group_rule(native)


def start_groups(driver, names: list[str]) -> tuple[list, list[str]]:
    """What create_node takes as ``ex_security_groups`` for these names, and the unknown names.

    EC2 takes the names (and checks them itself); OpenStack the group objects,
    looked up here.
    """
    if is_openstack_family(driver):
        groups = {group.name: group for group in driver.ex_list_security_groups()}
        missing = [name for name in names if name not in groups]
        return [groups[name] for name in names if name in groups], missing
    return list(names), []
