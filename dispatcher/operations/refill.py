"""The refill: VMs created until a pool has its target free or booting, never past
``max_total``, on the first of its clouds that accepts; on a cloud, with the first of its
sizes, and with the next while the cloud refuses one for capacity or quota. A cloud that
fails otherwise, or refuses every size, is left alone for a back-off that doubles with
each failure in a row, and the rest go to the next."""

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

from flask import current_app

from .. import clock, clouds, metrics
from ..bookkeeping import ledger
from ..clouds import Cloud, nodes
from ..errors import DispatcherError
from ..extensions import db
from ..pools import PoolCloud, PoolSpec, marks, passes
from ..pools.events import PoolReport, failed, record
from ..serializers import as_utc


def refill(spec: PoolSpec, report: PoolReport, target: int, outdated: int = 0) -> None:
    """Create what the pool lacks of ``target`` free or booting VMs, the ``outdated`` free
    VMs waiting for their replacement counting for nothing (and allowed beyond
    ``max_total`` meanwhile)."""
    totals = ledger.pool_totals(spec.name)
    need = min(
        target - (totals["free"] - outdated) - totals["booting"],
        spec.max_total + outdated - sum(totals.values()),
    )
    if need <= 0:
        return
    states = passes.cloud_states(spec.name)
    now = clock.now()
    for index, entry in enumerate(spec.clouds):
        state = states.get(entry.cloud)
        retry_at = as_utc(state.retry_at) if state is not None else None
        if retry_at is not None and retry_at > now:
            report.problems.append(
                f"{entry.cloud}: left alone until {retry_at.isoformat()} after: {state.last_error}"
            )
        else:
            need -= _create(spec, entry, need, report)
        if need <= 0:
            return
        if index + 1 < len(spec.clouds):
            metrics.POOL_SPILLOVERS.labels(spec.name, entry.cloud).inc()


def _create(spec: PoolSpec, entry: PoolCloud, need: int, report: PoolReport) -> int:
    """Create ``need`` VMs of the pool on the entry's cloud with its first size; while the
    cloud refuses a size for capacity or quota, those still missing with its next size.
    How many were made."""
    cloud = clouds.get(entry.cloud)
    try:
        # Looked up once here, and from the shared caches in the creating threads.
        cloud.image(entry.image)
        for size in entry.size:
            cloud.size(size)
        tagged = marks.takes_metadata(cloud.driver)
    except DispatcherError as exc:
        failed(spec, cloud, exc.message, report)
        return 0

    made, refused = 0, []  # the sizes the cloud refused for capacity, in order
    for size in entry.size:
        after = _after(refused)
        made_now, failures = _create_sized(spec, entry, cloud, size, need - made, tagged, after)
        made += made_now
        if made_now and refused:
            report.fallbacks.append(f"{cloud.name}: {made_now} created with size {size}, {after}")
        if not failures:
            passes.record_success(spec.name, cloud.name)
            break
        last = size == entry.size[-1]
        if last or not all(clouds.is_capacity_refusal(exc) for exc in failures):
            during = f" (size {size}, {after})" if refused else ""
            failed(spec, cloud, f"creating a VM failed{during}: {failures[0].message}", report)
            break
        metrics.POOL_SIZE_FALLBACKS.labels(spec.name, cloud.name, size).inc()
        refused.append(size)
    report.created += made
    return made


def _after(refused: list[str]) -> str:
    """``after m5.large was refused for capacity``, for the sizes ``refused``."""
    if not refused:
        return ""
    if len(refused) == 1:
        return f"after {refused[0]} was refused for capacity"
    return f"after {', '.join(refused[:-1])} and {refused[-1]} were refused for capacity"


def _create_sized(
    spec: PoolSpec,
    entry: PoolCloud,
    cloud: Cloud,
    size: str,
    need: int,
    tagged: bool,
    after: str,
) -> tuple[int, list[DispatcherError]]:
    """Create ``need`` VMs of the pool on ``cloud`` with ``size``, a few at a time, each
    recorded as booting as soon as its create call returns (``after``: why not with an
    earlier size, for the history). How many were made, and the failures."""
    per_thread = threading.local()
    # A cloud that refused one creation (quota, capacity) would refuse the rest: those not
    # yet begun are not asked for, and go to the next size or cloud.
    refused = threading.Event()

    def create(creation_id: str) -> dict | None:
        if refused.is_set():
            return None
        if not hasattr(per_thread, "cloud"):  # one driver (one session) per creating thread
            per_thread.cloud = cloud.sibling()
        try:
            return nodes.start_node(
                per_thread.cloud,
                name=marks.vm_name(spec.name, creation_id),
                image=entry.image,
                size=size,
                keyname=entry.keyname,
                metadata=(
                    marks.metadata(spec.name, creation_id, entry.metadata)
                    if tagged
                    else entry.metadata or None
                ),
                location=entry.location,
                security_groups=list(entry.security_groups) if entry.security_groups else None,
            )
        except DispatcherError:
            refused.set()
            raise

    created = f"created (size {size}, {after})" if after else "created"
    made, failures = 0, []
    # A cloud in the process (Dummy) numbers its nodes without a lock: one at a time.
    concurrency = 1 if cloud.in_process else current_app.config["POOLS_CREATE_CONCURRENCY"]
    workers = max(1, min(need, concurrency))
    with ThreadPoolExecutor(workers, thread_name_prefix=f"pool-{spec.name}") as executor:
        ids = [marks.new_creation_id() for _ in range(need)]
        creations = {executor.submit(create, creation_id): creation_id for creation_id in ids}
        for future in as_completed(creations):
            try:
                node = future.result()
                if node is None:
                    continue
                row = ledger.add_booting(
                    spec.name, cloud.name, node, creations[future], entry.template, size
                )
            except DispatcherError as exc:
                failures.append(exc)
                continue
            record(cloud, "create", row, "ok", f"Node {row.id_vm} {created}, booting")
            db.session.commit()
            metrics.POOL_CREATIONS.labels(spec.name, cloud.name).inc()
            made += 1
    return made, failures
