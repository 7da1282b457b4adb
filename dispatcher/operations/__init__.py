"""The changes the API makes: each a use case over one cloud, and the bookkeeping.

Views call these for whatever changes a cloud or an assignment; reads without side
effects call the resource modules of ``clouds`` (and the bookkeeping) directly.
Each takes the ``Cloud`` its request resolved once, and returns the answer's fields.
"""

from .assignments import assign_vm, extend_vm, release_vm, sync_ledger
from .pooled import assign_from_pool
from .resources import (
    attach_volume,
    change_port,
    create_security_group,
    create_volume,
    delete_security_group,
    destroy_volume,
    detach_volume,
)
from .vms import POWER_RESULTS, power_vm, start_vm, stop_vm

__all__ = [
    "POWER_RESULTS",
    "assign_from_pool",
    "assign_vm",
    "attach_volume",
    "change_port",
    "create_security_group",
    "create_volume",
    "delete_security_group",
    "destroy_volume",
    "detach_volume",
    "extend_vm",
    "power_vm",
    "release_vm",
    "start_vm",
    "stop_vm",
    "sync_ledger",
]
