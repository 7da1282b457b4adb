"""The assignment history: every assign and release, forced stops of assigned VMs, who
asked, for whom, and how it ended."""

from sqlalchemy import bindparam, insert, or_, select, update

from . import clock, metrics
from .extensions import db
from .models import AuditEntry
from .requestlog import current_request_id
from .serializers import as_utc, audit_entry_to_dict

LIMIT_DEFAULT = 50
LIMIT_MAX = 1000
# The largest id of an entry (the column is a 32-bit integer).
ID_MAX = 2**31 - 1


_ENTRIES = AuditEntry.__table__
# Built once: an entry is written on every assign and release, and a statement built
# anew costs more than its round trip. Every column is given (None where the entry has
# none), so that one compiled form serves every entry.
_WRITTEN = [column.key for column in _ENTRIES.columns if column.key != "id"]
_INSERT = insert(_ENTRIES).returning(_ENTRIES.c.id)
_AMEND = (
    update(_ENTRIES)
    .where(_ENTRIES.c.id == bindparam("entry_id"))
    .values(outcome=bindparam("outcome"), message=bindparam("message"))
)


def _values(entry: dict) -> dict:
    """Every written column of ``entry`` (None where it has none), under the current
    request id, at the dispatcher's clock's now."""
    values = dict.fromkeys(_WRITTEN)
    values.update(entry, created_at=clock.now(), request_id=current_request_id())
    return values


def record(**entry) -> int:
    """Write ``entry`` (AuditEntry's columns) under the current request id, at the
    dispatcher's clock's now, in the session's transaction: the use case that made the
    change commits the two together. The entry's id."""
    entry_id = db.session.execute(_INSERT, _values(entry)).scalar_one()
    counted(**entry)
    return entry_id


def written_by(source, taken: dict):
    """The entry as a part of the statement of the change it records, in its
    transaction: an INSERT of one entry per row of ``source`` (a CTE of the rows that
    change), the columns ``taken`` from the row (SQL expressions of ``source``'s columns),
    the others bound by name as ``bound`` gives them. Built once, like the statement."""
    values = [
        taken[key] if key in taken else bindparam(f"entry_{key}", type_=_ENTRIES.c[key].type)
        for key in _WRITTEN
    ]
    return insert(_ENTRIES).from_select(_WRITTEN, select(*values).select_from(source))


def bound(**entry) -> dict:
    """The parameters of ``written_by``'s INSERT for ``entry`` (AuditEntry's columns, but
    those taken from the row), as ``record`` writes it: under the current request id, at
    the clock's now."""
    return {f"entry_{key}": value for key, value in _values(entry).items()}


def counted(**entry) -> None:
    """Count ``entry`` in /metrics: ``record`` does, for what it writes; a use case whose
    change's statement wrote the entry (``written_by``) calls it."""
    metrics.count_history_entry(entry["cloud"], entry["action"], entry["outcome"])


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


def amend(entry_id: int, outcome: str, message: str) -> None:
    """Say how the recorded change ``entry_id`` ended after its commit (what became of
    the VM); the use case commits."""
    db.session.execute(
        _AMEND, {"entry_id": entry_id, "outcome": outcome, "message": message[:1000]}
    )


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
