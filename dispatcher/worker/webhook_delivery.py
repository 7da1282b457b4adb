"""The delivery of the lease webhook calls that are due, one worker at a time."""

from .. import webhooks
from ..locks import one_at_a_time
from ..webhooks import DeliveryReport

NAME = "webhooks"
LOCK = ":webhooks"


def run() -> DeliveryReport | None:
    """Send the calls that are due; None when another worker sends them."""
    with one_at_a_time(LOCK) as held:
        return webhooks.deliver_due() if held else None
