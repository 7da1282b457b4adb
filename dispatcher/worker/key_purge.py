"""The purge of the Idempotency-Keys past their time."""

import logging

from .. import idempotency

NAME = "keys"

log = logging.getLogger(__name__)


def run() -> int:
    """Delete the keys past their time; how many. Any worker may: a key goes once."""
    purged = idempotency.purge_expired()
    if purged:
        log.info("worker: %d expired Idempotency-Keys deleted", purged)
    return purged
