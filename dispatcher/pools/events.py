"""What a pool pass leaves behind: a report, history entries with caller
``pool-manager``, and a cloud's failure on record."""

from dataclasses import dataclass, field

from flask import current_app

from .. import history, metrics
from ..clouds import Cloud
from . import passes
from .spec import PoolSpec

# The caller of the manager's entries in the history.
CALLER = "pool-manager"


@dataclass
class PoolReport:
    """What one pass did to one pool."""

    pool: str
    skipped: bool = False  # another manager held the pool's lock
    target: int | None = None  # the VMs it was to keep free or booting
    held: str | None = None  # "paused" or "draining" by an admin: it created nothing
    created: int = 0
    promoted: int = 0
    destroyed: int = 0
    adopted: int = 0
    failed_checks: int = 0  # ready checks failed, by booting and free VMs
    problems: list[str] = field(default_factory=list)  # why VMs could not be made
    # VMs made with a size other than their cloud's first, and the sizes refused before it.
    fallbacks: list[str] = field(default_factory=list)


def entry(cloud: Cloud, action: str, row) -> dict:
    """The fields of the history entry of the pass's ``action`` on the VM of ``row``."""
    return {
        "cloud": cloud.name,
        "action": action,
        "caller": CALLER,
        "id_vm": row.id_vm,
        "hostname": row.hostname,
        "vm_type": row.pool,
    }


def record(cloud: Cloud, action: str, row, outcome: str, message: str) -> None:
    """Add the entry of the pass's ``action`` to the history; the pass commits."""
    history.record(**entry(cloud, action, row), outcome=outcome, message=message[:1000])


def failed(spec: PoolSpec, cloud: Cloud, message: str, report: PoolReport) -> None:
    config = current_app.config
    passes.record_failure(
        spec.name,
        cloud.name,
        message,
        config["POOLS_BACKOFF_SECONDS"],
        config["POOLS_BACKOFF_MAX_SECONDS"],
    )
    metrics.POOL_FAILURES.labels(spec.name, cloud.name).inc()
    report.problems.append(f"{cloud.name}: {message}")
