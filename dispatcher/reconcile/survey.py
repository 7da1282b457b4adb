"""The survey: what the books and the clouds disagree on, found without a change."""

import time
from dataclasses import dataclass, field

from .. import bookkeeping, clouds, pools
from ..clouds import Cloud, nodes
from ..clouds.everywhere import list_everywhere, outcome_to_dict
from ..errors import InvalidRequestError
from ..models import ASSIGNED, BOOTING, FREE, RESERVED, STATUS_NAMES
from ..pools import marks
from ..shapes import TEXT, TEXT_OR_NULL, describes, list_of

KINDS = ("orphans", "ghosts", "mismatches")
# The books' states of a ghost, and of a mismatch.
GHOST_STATES = frozenset({FREE, ASSIGNED, BOOTING, RESERVED})
MISMATCH_STATES = frozenset({FREE, ASSIGNED})
# What a cloud reports of a VM that does not work.
DOWN = frozenset({nodes.STOPPED, nodes.SUSPENDED, nodes.ERROR})

MARK_DELETED = "mark DELETED"
MARK_FAULTY = "mark FAULTY"
DESTROY = "destroy"
RECORD_FREE = "record FREE"
REPORT_ONLY = "none: the books are Cistern's, which the dispatcher only reports on"


@dataclass
class Finding:
    """One thing the books and a cloud disagree on, and its fix: what ``fixes.apply``
    would do, or once applied, what it did."""

    kind: str  # one of KINDS
    cloud: str
    id_vm: str
    hostname: str | None
    ledger_state: str | None  # None: the books lack it (an orphan)
    cloud_state: str | None  # None: the cloud lacks it (a ghost)
    pool: str | None
    fix: str
    row: dict | None = None  # the books' row, as read (ghosts, mismatches)
    node: object = field(default=None, repr=False)  # the libcloud node (orphans)
    creation_id: str | None = None  # of an orphan a pool of this dispatcher made
    adoptable: bool = False


@describes(
    "ReconcileItem",
    {
        "cloud": TEXT,
        "id_vm": TEXT,
        "hostname": TEXT_OR_NULL,
        "ledger_state": TEXT_OR_NULL,
        "cloud_state": TEXT_OR_NULL,
        "pool": TEXT_OR_NULL,
        "fix": TEXT,
    },
)
def finding_to_dict(finding: Finding) -> dict:
    """ITEM: one orphan, ghost or mismatch, with its fix."""
    return {
        "cloud": finding.cloud,
        "id_vm": finding.id_vm,
        "hostname": finding.hostname,
        "ledger_state": finding.ledger_state,
        "cloud_state": finding.cloud_state,
        "pool": finding.pool,
        "fix": finding.fix,
    }


# The answer's lists, and how each cloud's listing went.
REPORT_FIELDS = {kind: list_of(finding_to_dict) for kind in KINDS} | {
    "clouds": list_of(outcome_to_dict)
}


@dataclass
class Survey:
    """What a reconcile found, by cloud then id, and how each cloud's listing went."""

    findings: list[Finding]
    clouds: list[dict]

    def of(self, kind: str) -> list[Finding]:
        return [finding for finding in self.findings if finding.kind == kind]

    def to_dict(self) -> dict:
        shown = {kind: [finding_to_dict(found) for found in self.of(kind)] for kind in KINDS}
        return {**shown, "clouds": self.clouds}

    def counts(self, cloud: str) -> dict[str, int]:
        """How many of each kind the survey found on ``cloud``."""
        return {kind: sum(1 for found in self.of(kind) if found.cloud == cloud) for kind in KINDS}


def refuse_fixes() -> None:
    """Fixes asked of books the dispatcher does not keep.

    :raises InvalidRequestError: the bookkeeping is Cistern's.
    """
    if not bookkeeping.backend().mends_books:
        raise InvalidRequestError(
            "apply: the fixes change the local ledger; beside Cistern "
            "(ASSIGNMENT_BACKEND=cistern) the reconcile only reports"
        )


def survey(
    cloud: str | None = None, destroy_orphans: bool = False, record_orphans: bool = False
) -> Survey:
    """What the books and ``cloud`` (None: every cloud) disagree on; nothing changes.

    Every cloud is listed at once, each within CLOUD_TIMEOUT: one that fails is an error
    entry of ``clouds`` and has no findings, never ghosts it cannot tell of.

    :raises DispatcherError: the one cloud named failed; the books cannot be read.
    """
    if cloud is None:
        targets = clouds.every()
        listed, outcomes = list_everywhere(targets, _listing)
    else:
        targets = [clouds.get(cloud)]
        started = time.perf_counter()
        listed = [{**item, "cloud": cloud} for item in _listing(targets[0])]
        seconds = time.perf_counter() - started
        outcomes = [outcome_to_dict(cloud, len(listed), seconds, None)]
    keeper = bookkeeping.backend()
    fixable = keeper.mends_books
    findings = []
    for target, outcome in zip(targets, outcomes, strict=True):
        if outcome["status"] != "ok":
            continue
        found = [item["node"] for item in listed if item["cloud"] == target.name]
        books = keeper.books(target.name)
        orphans = RECORD_FREE if record_orphans else DESTROY if destroy_orphans else None
        findings.extend(_compare(target, found, books, fixable, orphans))
    findings.sort(key=lambda finding: (finding.cloud, finding.id_vm))
    return Survey(findings, outcomes)


def _listing(cloud: Cloud) -> list[dict]:
    return [{"id": str(node.id), "node": node} for node in cloud.call_driver("list_nodes")]


def _compare(
    cloud: Cloud, listed: list, books: list[dict], fixable: bool, orphans: str | None
) -> list[Finding]:
    alive = {str(node.id): node for node in listed if node.state != nodes.TERMINATED}
    booked = {str(row["id_vm"]): row for row in books}
    findings = []
    for row_id, row in booked.items():
        node = alive.get(row_id)
        status = row.get("status")  # a Cistern row may lack it: then neither
        state = STATUS_NAMES.get(status, str(status))
        if node is None and status in GHOST_STATES:
            fix = MARK_DELETED if fixable else REPORT_ONLY
            findings.append(_of_row("ghosts", cloud, row, state, None, fix))
        elif node is not None and node.state in DOWN and status in MISMATCH_STATES:
            fix = MARK_FAULTY if fixable else REPORT_ONLY
            findings.append(_of_row("mismatches", cloud, row, state, str(node.state), fix))
    by_name = not marks.takes_metadata(cloud.driver)
    for node_id, node in alive.items():
        if node_id not in booked:
            findings.append(_orphan(cloud, node, by_name, fixable, orphans))
    return findings


def _of_row(kind, cloud: Cloud, row: dict, ledger_state, cloud_state, fix: str) -> Finding:
    return Finding(
        kind, cloud.name, str(row["id_vm"]), row.get("hostname"), ledger_state, cloud_state,
        row.get("pool"), fix, row=row,
    )  # fmt: skip


def _orphan(cloud: Cloud, node, by_name: bool, fixable: bool, orphans: str | None) -> Finding:
    """An orphan, and its fix: adopted into the pool whose tags it carries, else what
    ``orphans`` says of the others (DESTROY, RECORD_FREE), else none."""
    mark = marks.mark_of(node, by_name)
    pool, creation_id = mark if mark is not None else (None, None)
    spec = pools.find(pool)
    adoptable = spec is not None and cloud.name in {entry.cloud for entry in spec.clouds}
    if not fixable:
        fix = REPORT_ONLY
    elif adoptable:
        fix = f"adopt into pool {pool}"
    elif orphans is not None:
        fix = orphans
    elif pool is not None:
        fix = f"none: no pool {pool} on {cloud.name} here (destroy_orphans destroys it)"
    else:
        fix = "none: not the dispatcher's (destroy_orphans destroys it)"
    return Finding(
        "orphans", cloud.name, str(node.id), node.name, None, str(node.state), pool, fix,
        node=node, creation_id=creation_id, adoptable=adoptable and fixable,
    )  # fmt: skip
