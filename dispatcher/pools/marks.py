"""How a VM the pool manager makes is known as the pool's in its cloud, before the ledger
has it: a creation id in the cloud's own tags or metadata, written with the create call,
and in the VM's name where the driver takes nothing else."""

import re
import uuid

from ..clouds.lookups import takes

POOL_TAG = "dispatcher-pool"
CREATION_TAG = "dispatcher-creation"
_NAMED = re.compile(r"^(?P<pool>[A-Za-z0-9][A-Za-z0-9_.-]{0,39})-(?P<creation>[0-9a-f]{12})$")


def new_creation_id() -> str:
    return uuid.uuid4().hex[:12]


def vm_name(pool: str, creation_id: str) -> str:
    """The name of the VM: ``<pool>-<creation id>``."""
    return f"{pool}-{creation_id}"


def takes_metadata(driver) -> bool:
    """Whether the driver writes metadata (EC2 tags, OpenStack metadata) with a create."""
    return takes(driver.create_node, "ex_metadata")


def metadata(pool: str, creation_id: str, configured: dict) -> dict:
    """The metadata a VM is created with: the pool's own, then the marks."""
    return {**configured, POOL_TAG: pool, CREATION_TAG: creation_id}


def mark_of(node, by_name: bool) -> tuple[str, str | None] | None:
    """``(pool, creation id)`` of a libcloud node the manager made; None for any other.

    ``by_name``: the driver keeps no metadata, so the name is the mark.
    """
    extra = node.extra or {}
    for key in ("tags", "metadata"):
        values = extra.get(key)
        if isinstance(values, dict) and POOL_TAG in values:
            return str(values[POOL_TAG]), values.get(CREATION_TAG)
    if by_name:
        found = _NAMED.match(node.name or "")
        if found:
            return found["pool"], found["creation"]
    return None
