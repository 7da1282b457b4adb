"""The assignment history: every assign and release, forced stops of assigned VMs, who
asked, for whom, and how it ended."""

from . import metrics
from .extensions import db
from .models import AuditEntry
from .requestlog import current_request_id
from .serializers import audit_entry_to_dict

LIMIT_DEFAULT = 50
LIMIT_MAX = 1000


def record(**entry) -> AuditEntry:
    """Add ``entry`` (AuditEntry's columns) under the current request id, and commit.

    Whatever the session holds is committed with it: a change and its entry together.
    """
    row = AuditEntry(**entry, request_id=current_request_id())
    db.session.add(row)
    db.session.commit()
    metrics.count_assignment(entry["cloud"], entry["action"], entry["outcome"])
    return row


def amend(row: AuditEntry, outcome: str, message: str) -> None:
    """Say how a recorded change ended after its commit (what became of the VM)."""
    row.outcome, row.message = outcome, message[:1000]
    db.session.commit()


def entries(cloud: str, limit: int = LIMIT_DEFAULT) -> list[dict]:
    """The cloud's assigns and releases, newest first, at most ``limit`` (and LIMIT_MAX)."""
    rows = db.session.scalars(
        db.select(AuditEntry)
        .where(AuditEntry.cloud == cloud)
        .order_by(AuditEntry.id.desc())
        .limit(min(limit, LIMIT_MAX))
    )
    return [audit_entry_to_dict(row) for row in rows]
