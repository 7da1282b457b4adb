"""The reconcile report: every cloud surveyed against the books, the counts kept for
/metrics (``operations.report_reconcile``; nothing is fixed), one worker at a time."""

import logging

from .. import operations
from ..locks import one_at_a_time
from ..reconcile import Survey

NAME = "reconcile"
LOCK = ":reconcile"

log = logging.getLogger(__name__)


def run() -> Survey | None:
    """The report of every cloud; None when another worker runs it."""
    with one_at_a_time(LOCK) as held:
        if not held:
            return None
        found = operations.report_reconcile()
    failed = [entry["message"] for entry in found.clouds if entry["status"] != "ok"]
    if failed:
        log.warning("reconcile report: %s", "; ".join(failed))
    return found
