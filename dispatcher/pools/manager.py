"""The pool manager's pass over a pool: promote, retire, adopt, then refill; and over the
leases (``leases.expiry``).

A pass, under the pool's lock (``lock.pool_lock``):

1. lists the nodes of each of the pool's clouds once;
2. adopts the nodes marked as the pool's that the ledger lacks (a manager stopped between
   a create call and its commit), as booting;
3. promotes booting VMs the cloud reports running to free, with their addresses; retires
   (marks faulty, then destroys) those still not running after ``boot_timeout``, free ones
   gone from their cloud, and faulty ones a failed destroy left;
4. creates VMs until the pool has ``min_ready`` free or booting, never past ``max_total``,
   on the first of its clouds that accepts: a cloud that fails is left alone for a
   back-off that doubles with each failure in a row, and the rest go to the next cloud.
"""

import logging
import threading
import time

from flask import current_app

from .. import clouds, idempotency, metrics, reconcile, serializers, webhooks
from ..clouds import Cloud, nodes
from ..errors import DispatcherError
from ..extensions import db
from ..leases import expiry
from ..leases.expiry import LeaseReport
from ..models import BOOTING, DELETED, FAULTY, FREE
from ..reconcile import counts
from ..serializers import as_utc, utcnow
from ..webhooks import DeliveryReport
from . import ledger, marks
from .events import CALLER, PoolReport, failed, record
from .lock import pool_lock
from .refill import refill
from .spec import PoolSpec

__all__ = ["CALLER", "LeaseReport", "PoolReport", "run_forever", "run_pass", "upkeep"]

log = logging.getLogger(__name__)

# The lock one manager at a time holds while it sends the webhook calls, and while it
# runs the reconcile report.
WEBHOOKS_LOCK = ":webhooks"
RECONCILE_LOCK = ":reconcile"


def run_pass(pools: list[PoolSpec]) -> list[PoolReport]:
    """One pass over each of ``pools`` whose lock is free; a report per pool."""
    reports = []
    for spec in pools:
        with pool_lock(spec.name) as held:
            reports.append(_pass(spec) if held else PoolReport(spec.name, skipped=True))
    return reports


def describe(pools: list[PoolSpec]) -> str:
    """What the manager's passes go over, for its first line."""
    return ", ".join([spec.name for spec in pools] + ["the leases"])


def upkeep() -> LeaseReport:
    """What a pass does besides the pools: release the leases that ended (and warn of
    those about to), and delete the Idempotency-Keys past their time."""
    report = expiry.run()
    purged = idempotency.purge_expired()
    if purged:
        log.info("pool manager: %d expired Idempotency-Keys deleted", purged)
    return report


def send_webhooks() -> DeliveryReport | None:
    """Send the lease webhook calls that are due; None when another manager sends them."""
    with pool_lock(WEBHOOKS_LOCK) as held:
        return webhooks.deliver_due() if held else None


def survey_clouds() -> reconcile.Survey | None:
    """The reconcile report of every cloud, its counts kept for /metrics (nothing is
    fixed); None when another manager runs it."""
    with pool_lock(RECONCILE_LOCK) as held:
        if not held:
            return None
        found = reconcile.survey()
        counts.record(found)
        failed = [entry["message"] for entry in found.clouds if entry["status"] != "ok"]
        if failed:
            log.warning("reconcile report: %s", "; ".join(failed))
        return found


def run_forever(app, pools: list[PoolSpec], interval: float, stop: threading.Event) -> None:
    """Passes over ``pools`` and the leases every ``interval`` seconds until ``stop`` is set,
    and the reconcile report every RECONCILE_INTERVAL seconds if set; the webhook calls
    sent by a thread of their own, after each pass and between passes, so that a receiver
    that hangs never holds a pass back.

    A pass that fails (the database away, a bug) is logged and the next one comes on
    time: the manager outlives what a pass meets.
    """
    wake = threading.Event()
    sender = threading.Thread(
        target=_send_forever, args=(app, interval, stop, wake), name="webhook-sender", daemon=True
    )
    sender.start()
    every = app.config["RECONCILE_INTERVAL"]
    next_survey = time.monotonic()
    while not stop.is_set():
        _logged(app, "the pass", lambda: _one_pass(pools))
        if every and time.monotonic() >= next_survey:
            next_survey = time.monotonic() + every
            _logged(app, "the reconcile report", survey_clouds)
        wake.set()  # what the pass queued goes out now
        stop.wait(interval)
    wake.set()
    sender.join()


def _one_pass(pools: list[PoolSpec]) -> None:
    for report in run_pass(pools):
        if report.problems:
            log.warning("pool %s: %s", report.pool, "; ".join(report.problems))
    leases = upkeep()
    if leases.problems:
        log.warning("leases: %s", "; ".join(leases.problems))


def _send_forever(app, interval: float, stop: threading.Event, wake: threading.Event) -> None:
    while not stop.is_set():
        wake.wait(interval)
        wake.clear()
        _logged(app, "sending the webhook calls", send_webhooks)


def _logged(app, what: str, work) -> None:
    """Run ``work`` in an app context; log what it raises rather than die of it."""
    with app.app_context():
        try:
            work()
        except Exception as exc:  # noqa: BLE001 (the manager outlives what a pass meets)
            reason = (str(exc).strip().splitlines() or [""])[0]
            log.error("pool manager: %s failed: %s: %s", what, type(exc).__name__, reason)
            log.debug("pool manager: %s failed", what, exc_info=True)
        finally:
            db.session.remove()


def _pass(spec: PoolSpec) -> PoolReport:
    report = PoolReport(spec.name)
    for entry in spec.clouds:
        cloud = clouds.get(entry.cloud)
        try:
            listed = cloud.call_driver("list_nodes")
        except DispatcherError as exc:
            failed(spec, cloud, f"listing its nodes failed: {exc.message}", report)
            continue
        _tend(spec, cloud, listed, report)
    refill(spec, report)
    ledger.finish_pass(spec.name, current_app.config["POOLS_LEVELS_KEPT"])
    return report


def _tend(spec: PoolSpec, cloud: Cloud, listed: list, report: PoolReport) -> None:
    """Adopt, promote and retire the pool's VMs on ``cloud`` by what its listing shows."""
    alive = {str(node.id): node for node in listed if node.state != nodes.TERMINATED}
    by_name = not marks.takes_metadata(cloud.driver)
    ours = {}  # node id -> creation id, of the nodes marked as the pool's
    for node_id, node in alive.items():
        mark = marks.mark_of(node, by_name)
        if mark is not None and mark[0] == spec.name:
            ours[node_id] = mark[1]
    known = ledger.known_ids(cloud.name, list(ours))
    for node_id, creation_id in ours.items():
        if node_id not in known:
            shown = serializers.node_to_dict(alive[node_id])
            row = ledger.add_booting(spec.name, cloud.name, shown, creation_id)
            record(cloud, "adopt", row, "ok", f"Node {row.id_vm} found in the cloud, adopted")
            report.adopted += 1
    now = utcnow()
    for row in ledger.live_rows(spec.name, cloud.name):
        node = alive.get(row.id_vm)
        if row.status == BOOTING:
            if node is not None and node.state == nodes.RUNNING:
                _promote(cloud, row, node, now, report)
            elif node is not None and node.state == nodes.ERROR:
                _retire(cloud, row, node, "the cloud reports it in error", report)
            elif (now - as_utc(row.created_at)).total_seconds() > spec.boot_timeout:
                reason = f"not running {spec.boot_timeout} s after its creation"
                _retire(cloud, row, node, reason, report)
        elif row.status == FREE and node is None:
            _retire(cloud, row, None, "gone from its cloud", report)
        elif row.status == FAULTY:
            _retire(cloud, row, node, "faulty", report)


def _promote(cloud: Cloud, row, node, now, report: PoolReport) -> None:
    shown = serializers.node_to_dict(node)
    if not ledger.move(
        row,
        BOOTING,
        FREE,
        ready_at=now,
        hostname=shown["name"] or row.hostname,
        public_ips=shown["public_ips"],
        private_ips=shown["private_ips"],
    ):
        return
    seconds = max(0.0, (now - as_utc(row.created_at)).total_seconds())
    metrics.POOL_BOOT_SECONDS.labels(row.pool, cloud.name).observe(seconds)
    record(cloud, "promote", row, "ok", f"Node {row.id_vm} running after {seconds:.0f} s, free")
    report.promoted += 1


def _retire(cloud: Cloud, row, node, reason: str, report: PoolReport) -> None:
    """Mark the VM faulty (committed first, so that a failed destroy is tried again by the
    next pass), then destroy it."""
    if row.status != FAULTY and not ledger.move(row, row.status, FAULTY):
        return  # taken by an assign meanwhile: not the manager's to retire any more
    db.session.commit()
    if node is None:
        ledger.move(row, FAULTY, DELETED)
        message = f"Node {row.id_vm} {reason}; not in the cloud, nothing to destroy"
        record(cloud, "destroy", row, "ok", message)
        report.destroyed += 1
        return
    try:
        nodes.destroy(cloud, node)
    except DispatcherError as exc:
        message = f"Node {row.id_vm} {reason}; destroying it failed: {exc.message}"
        record(cloud, "destroy", row, str(exc.status), message)
        return
    ledger.move(row, FAULTY, DELETED)
    record(cloud, "destroy", row, "ok", f"Node {row.id_vm} {reason}: destroyed")
    report.destroyed += 1
