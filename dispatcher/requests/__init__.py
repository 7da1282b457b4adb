"""Requests for VMs of several pools at once that wait in line: their rows
(``vm_requests``) and the line they wait in (what it still wants of a pool is
``pools.sizing.wanted``: the VMs set aside are the ledger's).

A request is ``pending`` until every VM it asks for is set aside for it (``RESERVED`` in
the ledger) and handed over in one transaction (``ready``); it may be ``cancelled``,
``expired`` (it waited past its ``expires_at``) or ``failed`` (a quota refused it when
it was served). Each change of state is one conditional UPDATE that says whether it
happened, and that locks the row meanwhile: a cancel and a serve of one request never
both win. Nothing here commits: the use cases of ``operations.requests`` do.
"""

import datetime

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import select, update

from .. import clock, metrics
from ..config import check_number
from ..errors import ConfigurationError
from ..extensions import db
from ..models import VMRequest
from ..serializers import as_utc

PENDING, READY, CANCELLED, EXPIRED, FAILED = "pending", "ready", "cancelled", "expired", "failed"
STATES = (PENDING, READY, CANCELLED, EXPIRED, FAILED)
PRIORITIES = (1, 2, 3)  # 1 first
PRIORITY_DEFAULT = 2


def init_app(app) -> None:
    """Check the requests' settings; show the line on /metrics.

    :raises ConfigurationError: a setting that is not a whole number from 1, or a
        REQUEST_DEFAULT_EXPIRY above REQUEST_MAX_EXPIRY.
    """
    config = app.config
    for name in ("REQUEST_DEFAULT_EXPIRY", "REQUEST_MAX_EXPIRY", "REQUEST_MAX_VMS"):
        check_number(config, name, least=1, whole=True)
    if config["REQUEST_DEFAULT_EXPIRY"] > config["REQUEST_MAX_EXPIRY"]:
        raise ConfigurationError(
            f"REQUEST_DEFAULT_EXPIRY ({config['REQUEST_DEFAULT_EXPIRY']}) is more than "
            f"REQUEST_MAX_EXPIRY ({config['REQUEST_MAX_EXPIRY']})"
        )
    if config.get("POOLS"):  # no pools, no line: /metrics asks nothing of the database
        metrics.register_collector(app, LineCollector())


class LineCollector:
    """For /metrics: the requests in line, by the pools they want and their priority, read
    from the database at each scrape."""

    def collect(self):
        gauge = GaugeMetricFamily(
            "dispatcher_requests_pending",
            "Requests waiting in line, by a pool they want VMs of and their priority.",
            labels=["pool", "priority"],
        )
        counted: dict[tuple[str, str], int] = {}
        for vms, priority in db.session.execute(
            select(VMRequest.vms, VMRequest.priority).where(VMRequest.state == PENDING)
        ):
            for pool in vms:
                key = (pool, str(priority))
                counted[key] = counted.get(key, 0) + 1
        for (pool, priority), number in sorted(counted.items()):
            gauge.add_metric([pool, priority], number)
        yield gauge


def add(
    caller: str,
    user: str,
    vms: dict[str, int],
    priority: int,
    expires_at: datetime.datetime,
    cloud: str | None = None,
    lease: int | None = None,
    webhook_url: str | None = None,
    tags: dict | None = None,
) -> VMRequest:
    """A new pending request, in the session (flushed: it has its id)."""
    row = VMRequest(
        state=PENDING,
        caller=caller,
        user=user,
        priority=priority,
        vms=dict(vms),
        cloud=cloud,
        lease=lease,
        webhook_url=webhook_url,
        tags=tags,
        created_at=clock.now(),
        expires_at=expires_at,
    )
    db.session.add(row)
    db.session.flush()
    return row


def get(request_id: int) -> VMRequest | None:
    """The request of this id, read afresh."""
    return db.session.get(VMRequest, request_id, populate_existing=True)


def listed(state: str | None = None, caller: str | None = None, limit: int = 1000):
    """Requests, the newest first: in ``state``, asked by ``caller``, where given."""
    query = select(VMRequest)
    if state is not None:
        query = query.where(VMRequest.state == state)
    if caller is not None:
        query = query.where(VMRequest.caller == caller)
    return list(db.session.scalars(query.order_by(VMRequest.id.desc()).limit(limit)))


def in_line() -> list[VMRequest]:
    """The pending requests in the order they are served: by priority, then age."""
    query = select(VMRequest).where(VMRequest.state == PENDING)
    order = (VMRequest.priority, VMRequest.created_at, VMRequest.id)
    return list(db.session.scalars(query.order_by(*order)))


def move(row: VMRequest, before: str, after: str, message: str | None = None) -> bool:
    """Move the request from ``before`` to ``after`` (the same state: only hold it, so
    that a concurrent change of it waits for this transaction); whether it moved."""
    values = {"state": after}
    if after != before:
        now = clock.now()
        values["ready_at" if after == READY else "ended_at"] = now
        if message is not None:
            values["message"] = message[:1000]
    moved = db.session.execute(
        update(VMRequest)
        .where(VMRequest.id == row.id, VMRequest.state == before)
        .values(**values)
        .returning(VMRequest.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if moved is not None:
        db.session.refresh(row)
    return moved is not None


def position(row: VMRequest, line: list[VMRequest]) -> int | None:
    """The request's place (1 first) among the pending requests that want a type it
    wants, in the order they are served; None once it is not pending."""
    if row.state != PENDING:
        return None
    place = 1
    for other in line:
        if other.id == row.id:
            return place
        if set(other.vms) & set(row.vms):
            place += 1
    return None


def expired(now: datetime.datetime) -> list[VMRequest]:
    """The pending requests past their ``expires_at``."""
    query = select(VMRequest).where(VMRequest.state == PENDING, VMRequest.expires_at <= now)
    return list(db.session.scalars(query.order_by(VMRequest.id)))


def waited(row: VMRequest) -> float | None:
    """Seconds from the request to its VMs handed over; None if they were not."""
    if row.ready_at is None:
        return None
    return (as_utc(row.ready_at) - as_utc(row.created_at)).total_seconds()
