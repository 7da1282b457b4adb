"""The worker's schedule: a pass (the pools, the leases, the keys) every interval, the
reconcile report every RECONCILE_INTERVAL if set, and the webhook calls sent by a thread
of their own, after each pass and between passes, so that a receiver that hangs never
holds a pass back.

A job that fails (the database away, a bug) is logged and the next one comes on time:
the worker outlives what a pass meets.
"""

import logging
import threading
import time

from ..extensions import db
from ..pools import PoolSpec
from . import (
    key_purge,
    lease_expiry,
    pool_pass,
    reconcile_report,
    request_serving,
    webhook_delivery,
)

log = logging.getLogger(__name__)


def describe(pools: list[PoolSpec]) -> str:
    """What the worker's passes go over, for its first line."""
    return ", ".join([spec.name for spec in pools] + ["the leases"])


def run_pass(pools: list[PoolSpec]) -> None:
    """The pools, the requests in line, the leases and the keys, once; what went wrong
    is logged."""
    for report in pool_pass.run(pools):
        if report.fallbacks:
            log.warning("pool %s: %s", report.pool, "; ".join(report.fallbacks))
        if report.problems:
            log.warning("pool %s: %s", report.pool, "; ".join(report.problems))
    request_serving.run()
    leases = lease_expiry.run()
    if leases.problems:
        log.warning("leases: %s", "; ".join(leases.problems))
    key_purge.run()


def run_forever(app, pools: list[PoolSpec], interval: float, stop: threading.Event) -> None:
    """Passes over ``pools`` and the leases every ``interval`` seconds until ``stop`` is
    set; the reconcile report every RECONCILE_INTERVAL seconds if set; the webhook calls
    from a thread of their own."""
    wake = threading.Event()
    sender = threading.Thread(
        target=_send_forever, args=(app, interval, stop, wake), name="webhook-sender", daemon=True
    )
    sender.start()
    every = app.config["RECONCILE_INTERVAL"]
    next_report = time.monotonic()
    while not stop.is_set():
        _logged(app, "the pass", lambda: run_pass(pools))
        if every and time.monotonic() >= next_report:
            next_report = time.monotonic() + every
            _logged(app, "the reconcile report", reconcile_report.run)
        wake.set()  # what the pass queued goes out now
        stop.wait(interval)
    wake.set()
    sender.join()


def _send_forever(app, interval: float, stop: threading.Event, wake: threading.Event) -> None:
    while not stop.is_set():
        wake.wait(interval)
        wake.clear()
        _logged(app, "sending the webhook calls", webhook_delivery.run)


def _logged(app, what: str, work) -> None:
    """Run ``work`` in an app context; log what it raises rather than die of it."""
    with app.app_context():
        try:
            work()
        except Exception as exc:  # noqa: BLE001 (the worker outlives what a pass meets)
            reason = (str(exc).strip().splitlines() or [""])[0]
            log.error("worker: %s failed: %s: %s", what, type(exc).__name__, reason)
            log.debug("worker: %s failed", what, exc_info=True)
        finally:
            db.session.remove()
