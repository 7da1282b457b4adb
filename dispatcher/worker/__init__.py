"""The worker: every background job of the dispatcher, on a schedule, in one process
(``dispatcher worker run``, or a thread of ``dispatcher run``), never in a web request.

One module per job, each a use case run under a lock of ``locks`` (one worker at a time
across processes and hosts does it): ``pool_pass`` (every warm pool), ``lease_expiry``,
``key_purge`` (Idempotency-Keys past their time), ``request_serving`` (the requests
in line), ``webhook_delivery`` and ``reconcile_report``; ``scheduler`` runs them.
Nothing of the dispatcher imports the worker: it is at the top, beside the API and the
commands.
"""

from . import (
    key_purge,
    lease_expiry,
    pool_pass,
    reconcile_report,
    request_serving,
    webhook_delivery,
)
from .scheduler import describe, run_forever, run_pass

# The jobs a pass runs by name (``dispatcher worker pass --job NAME``), in their order.
JOBS = {
    pool_pass.NAME: pool_pass,
    request_serving.NAME: request_serving,
    lease_expiry.NAME: lease_expiry,
    key_purge.NAME: key_purge,
    webhook_delivery.NAME: webhook_delivery,
    reconcile_report.NAME: reconcile_report,
}
# What a pass runs when no job is named: all but the reconcile report, which runs every
# RECONCILE_INTERVAL under ``worker run`` (or when named).
PASS = (
    pool_pass.NAME,
    request_serving.NAME,
    lease_expiry.NAME,
    key_purge.NAME,
    webhook_delivery.NAME,
)

__all__ = ["JOBS", "PASS", "describe", "run_forever", "run_pass"]
