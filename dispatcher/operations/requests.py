"""Requests for VMs of several pools at once: made by a client, served by the worker in
line (priority, then age) when every VM of one can be handed over in one transaction,
cancelled by their asker, expired when they waited too long.

Serving a request sets free VMs of its pools aside for it (``ledger.set_aside``) as they
come, the first in line first, and hands them all over at once (``ledger.hand_over``)
once it has every one: no request is ever served in part, and a VM set aside is handed
out by no assign. A cancel or an expiry puts them back.
"""

import datetime
import logging
from dataclasses import dataclass

from flask import current_app

from .. import (
    bookkeeping,
    clock,
    clouds,
    history,
    leases,
    metrics,
    pools,
    quotas,
    requests,
    tagging,
    webhooks,
)
from ..bookkeeping import ledger
from ..errors import (
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    QuotaExceededError,
)
from ..extensions import db
from ..models import BOOTING, VMRequest
from ..pools import overrides, sizing
from ..requests import CANCELLED, EXPIRED, FAILED, PENDING, READY
from ..serializers import as_utc, utc_iso
from ..shapes import (
    INTEGER,
    INTEGER_OR_NULL,
    TAGS_OR_NULL,
    TEXT,
    TEXT_OR_NULL,
    describes,
    list_of,
)
from .assignments import release_vm

log = logging.getLogger(__name__)

# The largest id of a request (the column is a 32-bit integer): any larger is none.
ID_MOST = 2**31 - 1


@dataclass
class ServeReport:
    """What one pass over the line did."""

    ready: int = 0
    waiting: int = 0
    expired: int = 0
    failed: int = 0


# -- making, cancelling -------------------------------------------------------------------


def request_vms(caller: str, body: dict) -> tuple[dict, bool]:
    """Ask, for ``caller``, the VMs of ``body["vms"]`` (``{vm_type: count}``) for
    ``body["user"]``; served at once if no request waits ahead for its types and every VM
    is free, else left in line. The request as REQUEST shows it, and whether it is ready.

    :raises NotFoundError: no pool serves a vm_type, or one keeps no VMs on the cloud.
    :raises InvalidRequestError: more VMs than a pool's max_total or REQUEST_MAX_VMS, a
        lease above its cap; tags beyond TAG_MAX, or without a key one of its pools
        requires; the bookkeeping keeps no pools (Cistern).
    :raises QuotaExceededError: a quota of the caller would refuse them now.
    """
    config = current_app.config
    if not bookkeeping.backend().keeps_pools:
        raise InvalidRequestError(
            "requests are served from warm pools, which only the local ledger keeps: "
            "beside Cistern (ASSIGNMENT_BACKEND=cistern) there are none"
        )
    asked, cloud, lease = body["vms"], body.get("cloud"), body.get("lease")
    tags = tagging.accepted(body.get("tags")) or None
    total = sum(asked.values())
    if total > config["REQUEST_MAX_VMS"]:
        most = config["REQUEST_MAX_VMS"]
        raise InvalidRequestError(f"vms: at most {most} VMs in one request, not {total}")
    for vm_type, count in asked.items():
        spec = pools.find(vm_type)
        if spec is None:
            raise NotFoundError(f"vms: no pool serves vm_type {vm_type}")
        tagging.require(spec, tags)
        if count > spec.max_total:
            raise InvalidRequestError(
                f"vms: {count} VMs of {vm_type} are more than its pool's max_total "
                f"({spec.max_total})"
            )
        if cloud is not None and cloud not in spec.cloud_names:
            raise NotFoundError(f"cloud: pool {vm_type} keeps no VMs on cloud {cloud}")
        # What the quotas would say now, counting the whole request: never binding (the
        # serve decides), but a request they refuse now is not left to wait for nothing.
        quotas.admit_assign(
            caller, vm_type, lease, leases.resolve(lease, spec), dry_run=True, count=count
        )
    webhook_url = body.get("webhook_url")
    if webhook_url is not None:
        # Its calls are signed like every webhook's: no secret, no calls.
        try:
            webhooks.check_url("webhook_url", webhook_url, config.get("LEASE_WEBHOOK_SECRET"))
        except ConfigurationError:
            raise InvalidRequestError(
                "webhook_url: this dispatcher signs no webhook calls (no LEASE_WEBHOOK_SECRET)"
                if config.get("LEASE_WEBHOOK_SECRET") is None
                else "webhook_url: an http:// or https:// URL with a host"
            ) from None
    expiry = body.get("expires_in") or config["REQUEST_DEFAULT_EXPIRY"]
    if expiry > config["REQUEST_MAX_EXPIRY"]:
        most = config["REQUEST_MAX_EXPIRY"]
        raise InvalidRequestError(f"expires_in: at most {most} seconds, not {expiry}")
    row = requests.add(
        caller,
        body["user"],
        asked,
        body.get("priority", requests.PRIORITY_DEFAULT),
        clock.now() + datetime.timedelta(seconds=expiry),
        cloud=cloud,
        lease=lease,
        webhook_url=webhook_url,
        tags=tags,
    )
    _record(row, "request", "ok", f"request {row.id}: {_asked(row)} for {row.user}, waiting")
    db.session.commit()
    line = requests.in_line()
    place = next((index for index, other in enumerate(line) if other.id == row.id), None)
    # Served at once only if none waits ahead of it; not in line any more: the worker
    # served it (or it was cancelled) since the commit.
    if place is not None and not any(set(other.vms) & set(row.vms) for other in line[:place]):
        _serve(row, ServeReport())
    row = requests.get(row.id)
    return request_to_dict(row), row.state == READY


def cancel_request(request_id: int, caller: str, admin: bool) -> dict:
    """Cancel the request: a pending one's VMs set aside go back to their pools, a ready
    one's are released as a release would (destroyed or kept by their pool's policy).
    The request as REQUEST shows it.

    :raises NotFoundError: no such request.
    :raises ForbiddenError: neither its asker nor an admin.
    :raises ConflictError: it has ended already.
    """
    row = _mine(request_id, caller, admin)
    if row.state == PENDING and requests.move(row, PENDING, CANCELLED, "cancelled"):
        back = ledger.put_back(row.id)
        _record(row, "cancel", "ok", f"request {row.id}: cancelled, {back} VMs set aside freed")
        db.session.commit()
        return request_to_dict(row)
    db.session.rollback()
    row = requests.get(request_id)
    if row.state != READY:
        raise ConflictError(f"request {row.id} is {row.state}: nothing to cancel")
    for vm in ledger.held_by_request(row.id):
        release_vm(clouds.get(vm.cloud), caller, node=vm.id_vm, admin=True)
    if requests.move(row, READY, CANCELLED, "cancelled: its VMs released"):
        _record(row, "cancel", "ok", f"request {row.id}: cancelled, its VMs released")
    db.session.commit()
    return request_to_dict(requests.get(row.id))


def _mine(request_id: int, caller: str, admin: bool) -> VMRequest:
    row = requests.get(request_id) if 0 < request_id <= ID_MOST else None
    if row is None:
        raise NotFoundError(f"no request {request_id}")
    if not admin and row.caller != caller:
        raise ForbiddenError(f"request {request_id} was made by another user")
    return row


def show_request(request_id: int, caller: str, admin: bool) -> dict:
    """The request as REQUEST shows it, to its asker or an admin.

    :raises NotFoundError: no such request.
    :raises ForbiddenError: neither its asker nor an admin.
    """
    return request_to_dict(_mine(request_id, caller, admin))


def list_requests(caller: str, admin: bool, state: str | None, user: str | None) -> list[dict]:
    """Requests, the newest first: an admin's of anyone (``user``: of that asker), anyone
    else's their own; in ``state`` if given."""
    asker = user if admin else caller
    line = requests.in_line()
    return [request_to_dict(row, line) for row in requests.listed(state, asker)]


# -- serving ------------------------------------------------------------------------------


def serve_requests() -> ServeReport:
    """The worker's pass over the line: requests past their time expired (their VMs set
    aside freed), then each pending request in order set aside what is free of what it
    wants, and handed everything once it has it all."""
    report = ServeReport()
    for row in requests.expired(clock.now()):
        if requests.move(row, PENDING, EXPIRED, "waited past its expires_at"):
            back = ledger.put_back(row.id)
            _record(row, "expire", "ok", f"request {row.id}: expired, {back} VMs set aside freed")
            _notify(row, "request.expired")
            report.expired += 1
        db.session.commit()
    line = requests.in_line()
    # A request that has nothing set aside and wants only pools with nothing free would
    # change nothing: it is passed over without a statement, so that a long line costs a
    # pass a few statements, not several per request. VMs freed during the pass wait for
    # the next.
    free = {pool: ledger.pool_totals(pool)["free"] for pool in {p for r in line for p in r.vms}}
    aside = ledger.set_aside_by_request([row.id for row in line])
    for row in line:
        if row.id in aside or any(free[pool] for pool in row.vms):
            _serve(row, report, free)
        else:
            report.waiting += 1
    return report


def _serve(row: VMRequest, report: ServeReport, free: dict[str, int] | None = None) -> None:
    """Set aside for ``row`` what it still wants and is free; hand it all over once it has
    every VM, each pool's under the caller's quotas; commits. ``free``, the VMs free in
    each pool, loses those set aside."""
    if not requests.move(row, PENDING, PENDING):  # held: a cancel of it waits for this
        db.session.rollback()
        return
    aside = ledger.set_aside_counts(row.id)
    complete = True
    for vm_type, count in row.vms.items():
        spec = pools.find(vm_type)
        need = count - aside.get(vm_type, 0)
        if spec is None or need <= 0:
            complete = complete and spec is not None
            continue
        where = [row.cloud] if row.cloud else spec.cloud_names
        # In a pass, no more than were free when it began: a VM freed meanwhile waits for
        # the next pass, where the first in line gets it, not whoever comes later in this.
        wanted = need if free is None else min(need, free.get(vm_type, 0))
        taken = ledger.set_aside(vm_type, where, row.id, wanted, spec.templates)
        if free is not None:
            free[vm_type] = max(free.get(vm_type, 0) - taken, 0)
        if taken < need:
            complete = False
    if not complete:
        db.session.commit()
        report.waiting += 1
        return
    try:
        handed = []
        for vm_type, count in row.vms.items():
            spec = pools.find(vm_type)
            seconds = quotas.admit_assign(
                row.caller, vm_type, row.lease, leases.resolve(row.lease, spec), count=count
            )
            handed += ledger.hand_over(
                row.id, row.user, row.caller, leases.until(seconds), pool=vm_type, tags=row.tags
            )
    except (QuotaExceededError, InvalidRequestError) as exc:
        db.session.rollback()
        if requests.move(row, PENDING, FAILED, exc.message):
            back = ledger.put_back(row.id)
            message = f"request {row.id}: failed, {back} VMs set aside freed: {exc.message}"
            _record(row, "serve", exc.outcome, message)
            _notify(row, "request.failed")
            report.failed += 1
        db.session.commit()
        return
    requests.move(row, PENDING, READY, "ready")
    metrics.REQUEST_WAIT_SECONDS.labels(str(row.priority)).observe(requests.waited(row))
    names = ", ".join(f"{vm.cloud}/{vm.id_vm}" for vm in handed)
    _record(row, "serve", "ok", f"request {row.id}: ready, {names} assigned to {row.user}")
    _notify(row, "request.ready")
    db.session.commit()
    report.ready += 1


# -- what a request shows -----------------------------------------------------------------


def _cloud(row: VMRequest) -> str:
    """The cloud a request's history entries go under: the one it named, else its first
    pool's first."""
    spec = pools.find(next(iter(row.vms)))
    return row.cloud or (spec.cloud_names[0] if spec is not None else "default")


def _notify(row: VMRequest, event: str) -> None:
    """Queue the request's ``event`` for its webhook_url, else REQUEST_WEBHOOK_URL (none:
    nothing), with the change it tells of."""
    url = row.webhook_url or current_app.config.get("REQUEST_WEBHOOK_URL")
    webhooks.queue_request(url, event, _cloud(row), request_to_dict(row))


def _record(row: VMRequest, action: str, outcome: str, message: str) -> None:
    """A history entry of the request; the entries of its making and its serve carry its
    tags."""
    history.record(
        cloud=_cloud(row),
        action=action,
        caller=row.caller,
        user=row.user,
        vm_type=",".join(sorted(row.vms)),
        outcome=outcome,
        message=message[:1000],
        tags=row.tags if action in ("request", "serve") else None,
    )


def _asked(row: VMRequest) -> str:
    return ", ".join(f"{count} {vm_type}" for vm_type, count in sorted(row.vms.items()))


@describes(
    "RequestedVM",
    {
        "vm_type": TEXT,
        "cloud": TEXT,
        "id_vm": TEXT,
        "hostname": TEXT_OR_NULL,
        "public_ips": list_of(TEXT),
        "private_ips": list_of(TEXT),
    },
    optional={"expires_at": TEXT},
)
def requested_vm_to_dict(vm) -> dict:
    """A VM handed over to a request: where it is, its addresses, its lease's end."""
    shown = {
        "vm_type": vm.pool,
        "cloud": vm.cloud,
        "id_vm": vm.id_vm,
        "hostname": vm.hostname,
        "public_ips": vm.public_ips or [],
        "private_ips": vm.private_ips or [],
    }
    if vm.expires_at is not None:
        shown["expires_at"] = utc_iso(vm.expires_at)
    return shown


@describes(
    "Request",
    {
        "id": INTEGER,
        "state": TEXT,
        "user": TEXT,
        "priority": INTEGER,
        "asked": {"type": "object", "additionalProperties": INTEGER},
        "created_at": TEXT,
        "expires_at": TEXT,
        "position": INTEGER_OR_NULL,
        "estimated_wait_s": INTEGER_OR_NULL,
        "vms": list_of(requested_vm_to_dict),
        "message": TEXT_OR_NULL,
        "tags": TAGS_OR_NULL,
    },
)
def request_to_dict(row: VMRequest, line: list[VMRequest] | None = None) -> dict:
    """REQUEST: its state, whom it is for, its priority, the VMs it asked for by type,
    when it was made and when it expires (ISO 8601, UTC); while pending, its place among
    the requests waiting for its types and an estimate of its wait in seconds (null when
    none can be made); once ready, its VMs; the tags it puts on them (null: none)."""
    pending = row.state == PENDING
    if pending and line is None:
        line = requests.in_line()
    vms = ledger.held_by_request(row.id) if row.state == READY else []
    return {
        "id": row.id,
        "state": row.state,
        "user": row.user,
        "priority": row.priority,
        "asked": dict(row.vms),
        "created_at": utc_iso(row.created_at),
        "expires_at": utc_iso(row.expires_at),
        "position": requests.position(row, line) if pending else None,
        "estimated_wait_s": _estimate(row, line) if pending else None,
        "vms": [requested_vm_to_dict(vm) for vm in vms],
        "message": row.message,
        "tags": row.tags,
    }


def _estimate(row: VMRequest, line: list[VMRequest]) -> int | None:
    """Seconds until every VM of the pending request ``row`` is handed over: for each
    pool, the VMs the requests up to it in line still want there are the booting ones in
    the order they will be ready (their creation and the pool's median boot), then new
    ones, made at the next pass; each is handed over at the pass after it is ready (half
    a pass interval on average, as is the next pass); the longest of its pools. None
    when the pool cannot make that many (its max_total) or is paused or draining."""
    up_to = line[: next(i for i, other in enumerate(line) if other.id == row.id) + 1]
    now = clock.now()
    interval = current_app.config["POOLS_INTERVAL"]
    longest = 0.0
    for vm_type in row.vms:
        spec = pools.find(vm_type)
        if spec is None:
            return None
        spec = overrides.applied(spec)
        wanted = sizing.wanted(up_to, vm_type)
        if wanted == 0:
            continue
        boot = sizing.median_boot(spec)
        booting = sorted(
            as_utc(vm.created_at)
            for cloud in spec.cloud_names
            for vm in ledger.pool_rows(vm_type, cloud)
            if vm.status == BOOTING
        )
        if wanted <= len(booting):
            ready = booting[wanted - 1] + datetime.timedelta(seconds=boot)
            seconds = max(0.0, (ready - now).total_seconds()) + interval / 2
        else:
            if spec.paused or spec.draining:
                return None
            made = sum(ledger.pool_totals(vm_type).values())
            if made + wanted - len(booting) > spec.max_total:
                return None
            seconds = interval / 2 + boot + interval / 2
        longest = max(longest, seconds)
    return round(longest)
