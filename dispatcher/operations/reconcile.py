"""The reconcile: the survey of the books against the clouds, and its fixes, each
audited with its caller and request id:

- an orphan carrying the tags of a pool here is adopted into it, booting (the pool
  manager's next pass promotes it), under the pool's lock so that no pass is creating
  it at the same moment;
- with ``destroy_orphans``, any other orphan is destroyed (``end_vm``), unless the books
  have come to know it meanwhile or the cloud made it less than RECONCILE_GRACE_SECONDS
  ago (a VM being started through the dispatcher is an orphan until its create call
  returns); with ``record_orphans`` instead, it is recorded FREE in the ledger (what
  ``dispatcher ledger-sync`` does);
- a ghost is marked DELETED; an ASSIGNED ghost with a lease is told to its lease webhook
  as released;
- a mismatch is marked FAULTY, and so handed out no more (the pool manager destroys a
  pool's faulty VMs); a leased one's webhook hears of its release too.

A row that changed since the survey read it (an assign, a release) is left as it is.
"""

from flask import current_app

from .. import bookkeeping, clock, clouds, history, reconcile, serializers
from ..bookkeeping import ledger
from ..errors import ConflictError, DispatcherError
from ..extensions import db
from ..leases import notices
from ..locks import one_at_a_time
from ..models import ASSIGNED, DELETED, FAULTY, STATUS_NAMES
from ..reconcile import counts
from ..reconcile.survey import DESTROY, RECORD_FREE, Finding, Survey
from .ending import Wording, end_vm

# The history's action of every change a reconcile makes.
ACTION = "reconcile"
CHANGED_MEANWHILE = "none: the ledger changed since the survey"
# How the history tells of an orphan's end.
ORPHAN_ENDED = Wording(
    destroyed="Node {node}, in no books: destroyed",
    gone="Node {node}, in no books: gone from its cloud already",
    failed="Node {node}: {error}",
)


def reconcile_books(
    cloud: str | None,
    caller: str,
    apply: bool = False,
    destroy_orphans: bool = False,
    record_orphans: bool = False,
) -> Survey:
    """The survey of ``cloud`` (None: every cloud), its fixes applied if ``apply`` (by
    ``caller``, in the history); else each finding's fix is what would be done.

    :raises InvalidRequestError: fixes asked beside Cistern.
    :raises DispatcherError: the one cloud named failed; the books cannot be read.
    """
    if apply:
        reconcile.refuse_fixes()
    found = reconcile.survey(cloud, destroy_orphans, record_orphans)
    if apply:
        for finding in found.findings:
            finding.fix = _fix(finding, caller)
    return found


def report_reconcile() -> Survey:
    """The survey of every cloud, its counts kept for /metrics (nothing is fixed)."""
    found = reconcile.survey()
    counts.record(found)
    return found


def _fix(finding: Finding, caller: str) -> str:
    """Apply the finding's fix; what became of it."""
    if finding.kind == "orphans":
        return _orphan(finding, caller)
    if finding.kind == "ghosts":
        return _mark(finding, caller, DELETED, "gone from its cloud")
    return _mark(finding, caller, FAULTY, f"{finding.cloud_state} in its cloud")


def _entry(finding: Finding, caller: str, user=None) -> dict:
    """The fields of the history entry of a change."""
    return {
        "cloud": finding.cloud,
        "action": ACTION,
        "caller": caller,
        "id_vm": finding.id_vm,
        "hostname": finding.hostname,
        "user": user,
        "vm_type": finding.pool,
    }


def _record(finding: Finding, caller: str, message: str, user=None) -> None:
    """The history entry of a change, committed with it."""
    history.record(**_entry(finding, caller, user), outcome="ok", message=message[:1000])
    db.session.commit()


def _mark(finding: Finding, caller: str, status: int, why: str) -> str:
    row = ledger.get(finding.row["id"])
    expected = finding.row["status"]
    if row is None or row.status != expected:
        return CHANGED_MEANWHILE
    user = row.user
    leased = notices.Leased.of(row) if expected == ASSIGNED and row.expires_at else None
    mark = ledger.mark_deleted if status == DELETED else ledger.mark_faulty
    if not mark(row, expected):
        db.session.rollback()
        return CHANGED_MEANWHILE
    if leased is not None:
        notices.notify("released", leased)
    done = f"marked {STATUS_NAMES[status]}"
    _record(finding, caller, f"Node {finding.id_vm} {why}: {done}", user=user)
    return done


def _orphan(finding: Finding, caller: str) -> str:
    if finding.adoptable:
        return _adopt(finding, caller)
    if finding.fix == RECORD_FREE:
        return _record_free(finding, caller)
    if finding.fix != DESTROY:
        return finding.fix  # reported only
    return _destroy(finding, caller)


def _adopt(finding: Finding, caller: str) -> str:
    with one_at_a_time(finding.pool) as held:
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
            db.session.rollback()
            return CHANGED_MEANWHILE
        done = f"adopted into pool {finding.pool}, booting"
        _record(finding, caller, f"Node {row.id_vm} found in the cloud: {done}")
    return done


def _record_free(finding: Finding, caller: str) -> str:
    shown = serializers.node_to_dict(finding.node)
    if ledger.rows_of(finding.cloud, node_id=shown["id"]):
        return CHANGED_MEANWHILE
    ledger.register(finding.cloud, shown)
    done = "recorded FREE"
    _record(finding, caller, f"Node {finding.id_vm} found in the cloud: {done}")
    return done


def _destroy(finding: Finding, caller: str) -> str:
    created = serializers.as_utc(getattr(finding.node, "created_at", None))
    grace = current_app.config["RECONCILE_GRACE_SECONDS"]
    if created is not None:
        age = (clock.now() - created).total_seconds()
        if age < grace:
            return f"none: made {max(age, 0):.0f} s ago, within RECONCILE_GRACE_SECONDS ({grace:g})"
    if bookkeeping.backend().find(finding.cloud, node_id=finding.id_vm) is not None:
        return CHANGED_MEANWHILE
    entry = _entry(finding, caller)
    try:
        ended = end_vm(clouds.get(finding.cloud), finding.node, "", entry, ORPHAN_ENDED)
    except DispatcherError as exc:
        return f"destroying it failed: {exc.message}"
    return "destroyed" if ended.destroyed else "none: gone from its cloud already"
