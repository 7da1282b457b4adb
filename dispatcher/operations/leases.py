"""The end of leases, each worker pass: warn of the leases about to end, release those
that ended, and finish the destroy of a released VM that its cloud refused.

A release at the end of a lease takes the path of an HTTP release (``release_vm``,
caller ``lease-expiry``): the VM's pool's release policy applies, its webhook hears of it,
and the history has it. A VM to destroy stays faulty until it is destroyed, so that the
ledger never calls free a VM that still runs; the next pass tries the destroy again.
"""

import logging
from dataclasses import dataclass, field

from flask import current_app

from .. import clock, clouds
from ..bookkeeping import ledger
from ..errors import DispatcherError
from ..extensions import db
from ..leases import notices
from .assignments import release_vm
from .ending import Wording, end_vm

log = logging.getLogger(__name__)

# The caller of the worker's lease entries in the history.
CALLER = "lease-expiry"
# How the history tells of the destroy a release at the end of a lease left to do.
LEFT_RUNNING = Wording(
    destroyed="Node {node} released at the end of its lease: destroyed",
    gone="Node {node} released at the end of its lease: gone already",
    failed="Node {node} released at the end of its lease; destroying it failed: {error}",
)


@dataclass
class LeaseReport:
    """What one pass did to the leases."""

    skipped: bool = False  # another worker held the lock
    warned: int = 0
    released: int = 0
    destroyed: int = 0
    problems: list[str] = field(default_factory=list)


def expire_leases() -> LeaseReport:
    """One pass over the leases: warn, release, finish destroys; what it did. The caller
    holds the leases' lock."""
    report = LeaseReport()
    now = clock.now()
    for row in ledger.leases_to_warn(now, current_app.config["LEASE_WARNING_SECONDS"]):
        leased = notices.Leased.of(row)
        if ledger.mark_warned(row, now):
            notices.notify("expiring", leased)
            report.warned += 1
        db.session.commit()
    released = set()
    for row in ledger.leases_ended(now):
        released.add(row.id)
        where = f"{row.cloud} node {row.id_vm}"
        try:
            release_vm(clouds.get(row.cloud), CALLER, node=row.id_vm, admin=True, hold=True)
            report.released += 1
        except DispatcherError as exc:
            db.session.rollback()
            report.problems.append(f"{where}: releasing it at the end of its lease: {exc.message}")
    for row in ledger.left_running(now):
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
        end_vm(cloud, row.id_vm, "", entry, LEFT_RUNNING)
    except DispatcherError as exc:
        report.problems.append(f"{row.cloud} node {row.id_vm}: {exc.message}")
        return
    report.destroyed += 1
