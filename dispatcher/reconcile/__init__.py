"""The reconcile: the bookkeeping checked against the clouds.

What a cloud's listing and the books disagree on:

- **orphans**: nodes the cloud has (and not terminated) that the books lack; those carrying
  the tags of a pool of this dispatcher (``pools.marks``) name it;
- **ghosts**: VMs the books have FREE, ASSIGNED, BOOTING or RESERVED whose node the cloud no
  longer lists, or lists as terminated;
- **mismatches**: VMs the books have FREE or ASSIGNED that the cloud reports stopped,
  suspended or in error: handed out, or about to be, and not working.

``survey`` finds them and changes nothing; ``operations.reconcile`` mends what it found:
in the local ledger only (Cistern's books are reported, never changed), and the orphans.
``counts`` keeps the worker's reports for /metrics.
"""

from .. import metrics
from ..config import check_number
from .counts import ReconcileCollector
from .survey import (
    DESTROY,
    KINDS,
    REPORT_FIELDS,
    Finding,
    Survey,
    finding_to_dict,
    refuse_fixes,
    survey,
)

__all__ = [
    "DESTROY",
    "KINDS",
    "REPORT_FIELDS",
    "Finding",
    "Survey",
    "finding_to_dict",
    "init_app",
    "refuse_fixes",
    "survey",
]


def init_app(app) -> None:
    """Check the reconcile's settings; show the pool manager's last reports on /metrics.

    :raises ConfigurationError: one line naming the setting at fault.
    """
    for name in ("RECONCILE_GRACE_SECONDS", "RECONCILE_INTERVAL"):
        check_number(app.config, name, unit=" of seconds")
    metrics.register_collector(app, ReconcileCollector(bool(app.config["RECONCILE_INTERVAL"])))
