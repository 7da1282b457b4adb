"""The reconcile's fixes, each audited with its caller and request id:

- an orphan carrying the tags of a pool here is adopted into it, booting (the pool
  manager's next pass promotes it), under the pool's lock so that no pass is creating
  it at the same moment;
- with ``destroy_orphans``, any other orphan is destroyed, unless the books have come to
  know it meanwhile or the cloud made it less than RECONCILE_GRACE_SECONDS ago (a VM
  being started through the dispatcher is an orphan until its create call returns);
- a ghost is marked DELETED; an ASSIGNED ghost with a lease is told to its lease webhook
  as released;
- a mismatch is marked FAULTY, and so handed out no more (the pool manager destroys a
  pool's faulty VMs); a leased one's webhook hears of its release too.

A row that changed since the survey read it (an assign, a release) is left as it is.
"""

from flask import current_app

from .. import bookkeeping, clouds, history, serializers
from ..clouds import nodes
from ..errors import ConflictError, DispatcherError, NotFoundError
from ..extensions import db
from ..leases import notices, records
from ..models import ASSIGNED, DELETED, FAULTY, STATUS_NAMES
from ..pools import ledger
from ..pools.lock import pool_lock
from .survey import DESTROY, Finding, Survey

# The history's action of every change a reconcile makes.
ACTION = "reconcile"
CHANGED_MEANWHILE = "none: the ledger changed since the survey"


def apply(survey: Survey, caller: str) -> None:
    """Apply the fix of each finding; each finding's ``fix`` then says what became of it."""
    for finding in survey.findings:
        if finding.kind == "orphans":
            finding.fix = _orphan(finding, caller)
        elif finding.kind == "ghosts":
            finding.fix = _mark(finding, caller, DELETED, "gone from its cloud")
        else:
            finding.fix = _mark(finding, caller, FAULTY, f"{finding.cloud_state} in its cloud")


def _record(finding: Finding, caller: str, outcome: str, message: str, user=None) -> None:
    """The history entry of a change; commits it with whatever the session holds."""
    history.record(
        cloud=finding.cloud,
        action=ACTION,
        caller=caller,
        id_vm=finding.id_vm,
        hostname=finding.hostname,
        user=user,
        vm_type=finding.pool,
        outcome=outcome,
        message=message[:1000],
    )


def _mark(finding: Finding, caller: str, status: int, why: str) -> str:
    row = records.get(finding.row["id"])
    expected = finding.row["status"]
    if row is None or row.status != expected:
        return CHANGED_MEANWHILE
    user = row.user
    leased = notices.Leased.of(row) if expected == ASSIGNED and row.expires_at else None
    forgotten = {"user": None, "assigned_at": None, "assigned_by": None}
    forgotten.update(expires_at=None, lease_warned_at=None)
    if not ledger.move(row, expected, status, **forgotten):
        db.session.rollback()
        return CHANGED_MEANWHILE
    if leased is not None:
        notices.notify("released", leased)
    done = f"marked {STATUS_NAMES[status]}"
    _record(finding, caller, "ok", f"Node {finding.id_vm} {why}: {done}", user=user)
    return done


def _orphan(finding: Finding, caller: str) -> str:
    if finding.adoptable:
        return _adopt(finding, caller)
    if finding.fix != DESTROY:
        return finding.fix  # reported only
    return _destroy(finding, caller)


def _adopt(finding: Finding, caller: str) -> str:
    with pool_lock(finding.pool) as held:
        if not held:
            return f"none: the pool manager is on pool {finding.pool}, whose pass adopts it"
        try:
            row = ledger.add_booting(
                finding.pool,
                finding.cloud,
                serializers.node_to_dict(finding.node),
                finding.creation_id,
            )
        except ConflictError:
            return CHANGED_MEANWHILE
    done = f"adopted into pool {finding.pool}, booting"
    _record(finding, caller, "ok", f"Node {row.id_vm} found in the cloud: {done}")
    return done


def _destroy(finding: Finding, caller: str) -> str:
    created = serializers.as_utc(getattr(finding.node, "created_at", None))
    grace = current_app.config["RECONCILE_GRACE_SECONDS"]
    if created is not None:
        age = (serializers.utcnow() - created).total_seconds()
        if age < grace:
            return f"none: made {max(age, 0):.0f} s ago, within RECONCILE_GRACE_SECONDS ({grace:g})"
    if bookkeeping.backend().find(finding.cloud, node_id=finding.id_vm) is not None:
        return CHANGED_MEANWHILE
    try:
        nodes.destroy(clouds.get(finding.cloud), finding.node)
    except NotFoundError:
        return "none: gone from its cloud already"
    except DispatcherError as exc:
        _record(finding, caller, str(exc.status), f"Node {finding.id_vm}: {exc.message}")
        return f"destroying it failed: {exc.message}"
    _record(finding, caller, "ok", f"Node {finding.id_vm}, in no books: destroyed")
    return "destroyed"
