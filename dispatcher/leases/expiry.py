"""The pool manager's work on leases, in each pass: warn of the leases about to end,
release those that ended, and finish the destroy of a released VM that its cloud
refused.

A release at the end of a lease takes the path of an HTTP release (``release_vm``,
caller ``lease-expiry``): the VM's pool's release policy applies, its webhook hears of it,
and the history has it. A VM to destroy stays faulty until it is destroyed, so that the
ledger never calls free a VM that still runs; the next pass tries the destroy again.
"""

import logging
from dataclasses import dataclass, field

from flask import current_app

from .. import bookkeeping, clouds, history
from ..clouds import nodes
from ..errors import DispatcherError, NotFoundError
from ..extensions import db
from ..operations import release_vm
from ..pools.lock import pool_lock
from ..serializers import utcnow
from . import notices, records

log = logging.getLogger(__name__)

# The caller of the manager's lease entries in the history.
CALLER = "lease-expiry"
# The lock one manager at a time holds over the leases; a pool's name holds no colon.
LOCK = ":leases"


@dataclass
class LeaseReport:
    """What one pass did to the leases."""

    skipped: bool = False  # another manager held the lock
    warned: int = 0
    released: int = 0
    destroyed: int = 0
    problems: list[str] = field(default_factory=list)


def run() -> LeaseReport:
    """One pass over the leases, unless another manager is on them."""
    with pool_lock(LOCK) as held:
        return _run() if held else LeaseReport(skipped=True)


def _run() -> LeaseReport:
    report = LeaseReport()
    now = utcnow()
    for row in records.to_warn(now, current_app.config["LEASE_WARNING_SECONDS"]):
        leased = notices.Leased.of(row)
        if records.mark_warned(row, now):
            notices.notify("expiring", leased)
            report.warned += 1
        db.session.commit()
    released = set()
    for row in records.ended(now):
        released.add(row.id)
        where = f"{row.cloud} node {row.id_vm}"
        try:
            release_vm(clouds.get(row.cloud), CALLER, node=row.id_vm, admin=True, hold=True)
            report.released += 1
        except DispatcherError as exc:
            db.session.rollback()
            report.problems.append(f"{where}: releasing it at the end of its lease: {exc.message}")
    for row in records.left_running(now):
        if row.id not in released:  # a destroy this pass tried already waits for the next
            _destroy(row, report)
    return report


def _destroy(row, report: LeaseReport) -> None:
    """Destroy the VM a release at the end of its lease left running, then forget it."""
    entry = {"cloud": row.cloud, "action": "destroy", "caller": CALLER, "id_vm": row.id_vm}
    entry.update(hostname=row.hostname, vm_type=row.recipe)
    try:
        cloud = clouds.get(row.cloud)
    except DispatcherError as exc:  # a cloud no longer configured
        report.problems.append(f"{row.cloud} node {row.id_vm}: {exc.message}")
        return
    try:
        nodes.destroy_node(cloud, node_id=row.id_vm)
        message = f"Node {row.id_vm} released at the end of its lease: destroyed"
    except NotFoundError:
        message = f"Node {row.id_vm} released at the end of its lease: gone already"
    except DispatcherError as exc:
        message = f"Node {row.id_vm} released at the end of its lease; destroying it failed"
        history.record(**entry, outcome=str(exc.status), message=f"{message}: {exc.message}")
        report.problems.append(f"{row.cloud} node {row.id_vm}: {exc.message}")
        return
    bookkeeping.backend().forget(row.cloud, row.id_vm)
    history.record(**entry, outcome="ok", message=message)
    report.destroyed += 1
