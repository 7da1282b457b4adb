"""Lease expiry: warn of the leases about to end, release those that ended
(``operations.expire_leases``), one worker at a time."""

from .. import operations
from ..locks import one_at_a_time
from ..operations.leases import LeaseReport

NAME = "leases"
# A pool's name holds no colon: a job's lock is never a pool's.
LOCK = ":leases"


def run() -> LeaseReport:
    """One pass over the leases, unless another worker is on them."""
    with one_at_a_time(LOCK) as held:
        return operations.expire_leases() if held else LeaseReport(skipped=True)
