"""The use cases: each change the API, the commands and the worker make, over the clouds,
the ledger and the history; each owns its commit.

Views call these for whatever changes a cloud or an assignment; reads without side
effects call the resource modules of ``clouds`` (and the bookkeeping) directly. Each
takes the ``Cloud`` its request resolved once (or None where none was named), and
returns the answer's fields. Every path that ends a VM goes through ``end_vm``.
"""

from .assignments import assign_vm, extend_vm, release_vm
from .ending import end_vm
from .leases import LeaseReport, expire_leases
from .pool_overrides import clear_pool_override, override_pool
from .pooled import assign_from_pool
from .pools import tend_pool
from .quotas import clear_quota, set_quota
from .reconcile import reconcile_books, report_reconcile
from .requests import (
    ServeReport,
    cancel_request,
    list_requests,
    request_vms,
    serve_requests,
    show_request,
)
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
    "LeaseReport",
    "assign_from_pool",
    "assign_vm",
    "attach_volume",
    "change_port",
    "clear_pool_override",
    "clear_quota",
    "create_security_group",
    "create_volume",
    "delete_security_group",
    "destroy_volume",
    "detach_volume",
    "end_vm",
    "expire_leases",
    "extend_vm",
    "override_pool",
    "power_vm",
    "reconcile_books",
    "set_quota",
    "release_vm",
    "report_reconcile",
    "request_vms",
    "serve_requests",
    "show_request",
    "list_requests",
    "cancel_request",
    "ServeReport",
    "start_vm",
    "stop_vm",
    "tend_pool",
]
