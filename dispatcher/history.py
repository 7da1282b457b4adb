"""The assignment history: every assign and release, forced stops of assigned VMs, who
asked, for whom, and how it ended."""

from sqlalchemy import or_

from . import clock, metrics
from .extensions import db
from .models import AuditEntry
from .requestlog import current_request_id
from .serializers import as_utc, audit_entry_to_dict

LIMIT_DEFAULT = 50
LIMIT_MAX = 1000
# The largest id of an entry (the column is a 32-bit integer).
ID_MAX = 2**31 - 1


def record(**entry) -> AuditEntry:
    """Add ``entry`` (AuditEntry's columns) under the current request id, at the
    dispatcher's clock's now, to the session: the use case that made the change commits
    the two together."""
    row = AuditEntry(**entry, created_at=clock.now(), request_id=current_request_id())
    db.session.add(row)
    metrics.count_history_entry(entry["cloud"], entry["action"], entry["outcome"])
    return row


def refusal_times(action: str, vm_type: str, outcome: str, spans) -> list:
    """When ``action`` for ``vm_type`` was refused with ``outcome`` within any of
    ``spans`` (``(start, end)``, the end left out), oldest first."""
    within = [
        (AuditEntry.created_at >= start) & (AuditEntry.created_at < end) for start, end in spans
    ]
    query = db.select(AuditEntry.created_at).where(
        AuditEntry.action == action,
        AuditEntry.vm_type == vm_type,
        AuditEntry.outcome == outcome,
        or_(*within),
    )
    return [as_utc(moment) for moment in db.session.scalars(query.order_by(AuditEntry.created_at))]


def amend(row: AuditEntry, outcome: str, message: str) -> None:
    """Say how a recorded change ended after its commit (what became of the VM); the use
    case commits."""
    row.outcome, row.message = outcome, message[:1000]


def entries(
    cloud: str,
    limit: int = LIMIT_DEFAULT,
    user: str | None = None,
    action: str | None = None,
    before: int | None = None,
) -> list[dict]:
    """The cloud's history, newest first, at most ``limit`` (and LIMIT_MAX) entries: only
    those about ``user`` (whose VM it was, or who asked), of ``action``, older than the
    entry ``before`` (the page after the one that ended there), where given."""
    query = db.select(AuditEntry).where(AuditEntry.cloud == cloud)
    if user is not None:
        query = query.where(or_(AuditEntry.user == user, AuditEntry.caller == user))
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(min(limit, LIMIT_MAX)))
    return [audit_entry_to_dict(row) for row in rows]
