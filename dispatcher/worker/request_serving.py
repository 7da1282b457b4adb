"""The line of requests for VMs: those past their time expired, the rest served in order
(``operations.serve_requests``), one worker at a time."""

from .. import operations
from ..locks import one_at_a_time
from ..operations import ServeReport

NAME = "requests"
LOCK = ":requests"


def run() -> ServeReport | None:
    """One pass over the line; None when another worker is on it."""
    with one_at_a_time(LOCK) as held:
        return operations.serve_requests() if held else None
