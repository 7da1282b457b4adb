"""A pass over a warm pool: adopt, promote, retire, then size it to its target.

A pass (the worker runs it under the pool's lock, one at a time across hosts), with the
admins' override of the pool applied:

1. lists the nodes of each of the pool's clouds once;
2. adopts the nodes marked as the pool's that the ledger lacks (a pass stopped between a
   create call and its commit), as booting;
3. promotes booting VMs the cloud reports running to free, with their addresses, once
   they answer the pool's ready check if it has one; retires (marks faulty, then ends:
   ``end_vm``) those still not running or not answering after ``boot_timeout``, free
   ones gone from their cloud, ones set aside for a queued request that are gone from
   their cloud or in error there, and faulty ones a failed destroy left (nothing else
   touches a VM set aside: it is the request's);
4. checks again the free VMs whose last check is ``recheck_seconds`` old, and takes out
   of the pool those that failed ``recheck_failures`` checks in a row;
5. computes the pool's target (``pools.sizing``: its floor, demand and forecast);
6. renews the free VMs older than ``max_age`` or made from a template the pool no longer
   has: each is retired once a current VM is free beyond the target in its place, and
   until then counts for nothing, so that the refill makes its replacement first;
7. retires the free VMs beyond the target, the longest free first, once the pool has
   held more than its target for its ``scale_down_delay`` (a draining pool's at once);
8. creates VMs until the pool has its target free or booting, never past ``max_total``
   but by the outdated VMs still waiting for their replacement (``refill``), unless the
   pool is paused or draining.

The checks of a pass run at once, in the worker's threads (``probes``), each within its
timeout: a VM that does not answer delays the pass by that timeout at most.
"""

from dataclasses import dataclass

from flask import current_app

from .. import clock, clouds, metrics, probes, serializers
from ..bookkeeping import ledger
from ..clouds import Cloud, nodes
from ..errors import DispatcherError
from ..extensions import db
from ..models import BOOTING, FAULTY, FREE, RESERVED
from ..pools import PoolSpec, ReadyCheck, marks, overrides, passes, sizing
from ..pools.events import PoolReport, entry, failed, record
from ..pools.sizing import Target
from ..serializers import as_utc
from .ending import Wording, end_vm
from .refill import refill

# How the history tells of a retired VM's end, ``{what}`` saying why it was retired.
RETIRED = Wording(
    destroyed="Node {node} {what}: destroyed",
    gone="Node {node} {what}; not in the cloud, nothing to destroy",
    failed="Node {node} {what}; destroying it failed: {error}",
)


@dataclass(frozen=True)
class Due:
    """A VM whose ready check this pass runs: booting and running, or free and due."""

    cloud: Cloud
    row: object
    node: object


@dataclass(frozen=True)
class Free:
    """A free VM the pass found in its cloud: one the surplus may retire."""

    cloud: Cloud
    row: object
    node: object


@dataclass(frozen=True)
class Outdated:
    """A free VM to renew, and why (``reason``: max_age or template)."""

    cloud: Cloud
    row: object
    node: object
    reason: str


def tend_pool(spec: PoolSpec) -> PoolReport:
    """One pass over the pool ``spec`` (as POOLS configures it: the admins' override is
    read here, afresh at each pass); what it did. The caller holds the pool's lock."""
    spec = overrides.applied(spec)
    report = PoolReport(spec.name)
    due: list[Due] = []
    outdated: list[Outdated] = []
    free: list[Free] = []
    for pool_cloud in spec.clouds:
        cloud = clouds.get(pool_cloud.cloud)
        try:
            listed = cloud.call_driver("list_nodes")
        except DispatcherError as exc:
            failed(spec, cloud, f"listing its nodes failed: {exc.message}", report)
            continue
        _tend(spec, cloud, listed, report, due, outdated, free)
    if due:
        _check(spec, due, report)
    target = sizing.target(spec)
    report.target = target.free
    waiting = _renew(spec, outdated, report, target.free) if outdated else 0
    surplus_since = _scale_down(spec, target, free, report)
    if spec.paused or spec.draining:
        report.held = "draining" if spec.draining else "paused"
    else:
        refill(spec, report, target.free, waiting)
    passes.finish_pass(spec.name, current_app.config["POOLS_LEVELS_KEPT"], surplus_since)
    return report


def _tend(
    spec: PoolSpec,
    cloud: Cloud,
    listed: list,
    report: PoolReport,
    due: list,
    outdated: list,
    free: list,
) -> None:
    """Adopt, promote and retire the pool's VMs on ``cloud`` by what its listing shows;
    add to ``due`` those to check first, to ``outdated`` the free ones to renew, to
    ``free`` every free one the cloud runs."""
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
            db.session.commit()
            report.adopted += 1
    now = clock.now()
    for row in ledger.pool_rows(spec.name, cloud.name):
        node = alive.get(row.id_vm)
        booted = (now - as_utc(row.created_at)).total_seconds() > spec.boot_timeout
        running = node is not None and node.state == nodes.RUNNING
        if row.status == BOOTING:
            if running and spec.ready_check is None:
                _promote(cloud, row, node, now, report)
            elif node is not None and node.state == nodes.ERROR:
                _retire(cloud, row, node, "the cloud reports it in error", report)
            elif running and not (booted and row.check_failures):
                due.append(Due(cloud, row, node))
            elif booted:
                what = "not answering its ready check" if running else "not running"
                _retire(
                    cloud, row, node, f"{what} {spec.boot_timeout} s after its creation", report
                )
        elif row.status in (FREE, RESERVED) and node is None:
            _retire(cloud, row, None, "gone from its cloud", report)
        elif row.status == RESERVED and node.state == nodes.ERROR:
            _retire(cloud, row, node, "the cloud reports it in error", report)
        elif row.status == FREE:
            free.append(Free(cloud, row, node))
            if _recheck_due(spec, row, now):
                due.append(Due(cloud, row, node))
            reason = _outdated(spec, row, now)
            if reason is not None:
                outdated.append(Outdated(cloud, row, node, reason))
        elif row.status == FAULTY:
            _retire(cloud, row, node, "faulty", report)


def _outdated(spec: PoolSpec, row, now) -> str | None:
    """Why the free VM of ``row`` is to be renewed (template, max_age), or None."""
    if not spec.is_current(row.cloud, row.template):
        return "template"
    ready = as_utc(row.ready_at)
    too_old = spec.max_age is not None and ready is not None
    if too_old and (now - ready).total_seconds() > spec.max_age:
        return "max_age"
    return None


# How the history tells why a free VM was renewed.
RENEWED = {
    "template": "made from a template the pool no longer has, replaced",
    "max_age": "free for more than the pool's max_age ({max_age} s), replaced",
}


def _renew(spec: PoolSpec, outdated: list[Outdated], report: PoolReport, target: int) -> int:
    """Retire the outdated free VMs that a current free VM beyond the ``target`` can take
    the place of, the longest free first; how many still wait for their replacement."""
    totals = ledger.pool_totals(spec.name)
    spare = totals["free"] - target
    waiting = 0
    for item in sorted(outdated, key=lambda item: (as_utc(item.row.ready_at), item.row.id)):
        if item.row.status != FREE:
            continue  # taken out by its check this very pass
        if spare <= 0:
            waiting += 1
            continue
        reason = RENEWED[item.reason].format(max_age=spec.max_age)
        if _retire(item.cloud, item.row, item.node, reason, report):
            metrics.POOL_REPLACEMENTS.labels(spec.name, item.reason).inc()
            spare -= 1
    return waiting


def _scale_down(spec: PoolSpec, target: Target, free: list[Free], report: PoolReport):
    """Retire the free VMs beyond the target, the longest free first, once the pool has
    held more than its target for its ``scale_down_delay`` (a draining pool's at once);
    since when the pool holds a surplus still (None: it holds none)."""
    surplus = ledger.pool_totals(spec.name)["free"] - target.free
    if surplus <= 0:
        return None
    now = clock.now()
    since = passes.surplus_since(spec.name) or now
    if not spec.draining and (now - since).total_seconds() < spec.scale_down_delay:
        return since
    still_free = [item for item in free if item.row.status == FREE]
    if spec.draining:
        reason = "free in a draining pool"
    else:
        reason = f"beyond the pool's target of {target.free} (set by {target.because})"
    for item in sorted(still_free, key=lambda item: (as_utc(item.row.ready_at), item.row.id)):
        if surplus <= 0:
            break
        if _retire(item.cloud, item.row, item.node, reason, report):
            metrics.POOL_SCALE_DOWNS.labels(spec.name).inc()
            surplus -= 1
    return since if surplus > 0 else None


def _recheck_due(spec: PoolSpec, row, now) -> bool:
    if spec.recheck_seconds is None:
        return False
    checked = as_utc(row.checked_at or row.ready_at)
    return checked is None or (now - checked).total_seconds() >= spec.recheck_seconds


def _probe(check: ReadyCheck, node):
    """The ready check of the VM of ``node``, to run in a thread: its failure, or None."""
    shown = serializers.node_to_dict(node)
    address = probes.first_address(shown["public_ips"], shown["private_ips"], check.address)

    def run() -> str | None:
        if address is None:
            return "it has no address"
        if check.port is not None:
            return probes.tcp(address, check.port, check.timeout)
        return probes.http(check.url, address, check.timeout)

    return run


def _check(spec: PoolSpec, due: list[Due], report: PoolReport) -> None:
    """Run the ready checks of ``due`` at once, then promote the booting VMs that pass and
    take out the free ones that failed too often."""
    check = spec.ready_check
    most = current_app.config["POOLS_CHECK_CONCURRENCY"]
    failures = probes.run_all([_probe(check, item.node) for item in due], most)
    now = clock.now()
    for item, failure in zip(due, failures, strict=True):
        row, cloud = item.row, item.cloud
        metrics.POOL_CHECKS.labels(spec.name, "failed" if failure else "passed").inc()
        booting = row.status == BOOTING
        if failure is None and booting:
            _promote(cloud, row, item.node, now, report)
            continue
        out_after = None if booting else spec.recheck_failures
        status = ledger.note_check(row, failure is None, now, out_after)
        if failure is None or status is None:
            db.session.commit()
            continue
        report.failed_checks += 1
        message = f"Node {row.id_vm} failed its ready check ({check.describe()}): {failure}"
        if status == FAULTY:
            message += f"; {row.check_failures} in a row, out of the pool"
        record(cloud, "check", row, "failed", message)
        db.session.commit()
        if status == FAULTY:
            metrics.POOL_REPLACEMENTS.labels(spec.name, "check").inc()
            reason = f"failed its ready check {row.check_failures} times in a row"
            _retire(cloud, row, item.node, reason, report)


def _promote(cloud: Cloud, row, node, now, report: PoolReport) -> None:
    shown = serializers.node_to_dict(node)
    hostname = shown["name"] or row.hostname
    if not ledger.promote(row, now, hostname, shown["public_ips"], shown["private_ips"]):
        db.session.rollback()
        return
    seconds = max(0.0, (now - as_utc(row.created_at)).total_seconds())
    metrics.POOL_BOOT_SECONDS.labels(row.pool, cloud.name).observe(seconds)
    record(cloud, "promote", row, "ok", f"Node {row.id_vm} running after {seconds:.0f} s, free")
    db.session.commit()
    report.promoted += 1


def _retire(cloud: Cloud, row, node, reason: str, report: PoolReport) -> bool:
    """Mark the VM faulty (committed first, so that a failed destroy is tried again by the
    next pass), then end it; whether it was the pass's to retire."""
    if row.status != FAULTY and not ledger.mark_faulty(row):
        db.session.rollback()
        return False  # taken by an assign meanwhile: not the pass's to retire any more
    db.session.commit()
    target = node if node is not None else row.id_vm
    try:
        end_vm(cloud, target, reason, entry(cloud, "destroy", row), RETIRED, node is None)
    except DispatcherError:
        return True  # on record; the next pass tries again
    report.destroyed += 1
    return True
