"""The decisions an assign or an extend asks of quotas, in its own transaction: the
pools, the lease, then (under the caller's lock) the VMs and the VM-hours."""

import datetime

from .. import clock, metrics, pools
from ..bookkeeping import ledger
from ..errors import QuotaExceededError
from ..locks import hold_until_commit
from ..serializers import as_utc
from .in_force import bounds_of, enabled
from .rules import Bound
from .usage import vm_hours


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}".rstrip("0").rstrip(".")


def _refuse(bound: Bound, username: str, used, message: str, dry_run: bool):
    if not dry_run:
        metrics.QUOTA_REFUSALS.labels(bound.limit, bound.rule.scope).inc()
    quota = {**bound.rule.reference(), "key": bound.limit, "limit": bound.value, "used": used}
    # The pool's name is in the message where the limit counts in one pool.
    rule = bound.rule.label(with_pool=False)
    raise QuotaExceededError(f"quota: user {username} {message} (rule {rule})", quota)


def _of_pool(bound: Bound) -> str:
    return f" of pool {bound.pool}" if bound.pool is not None else ""


def admit_assign(
    username: str,
    pool: str | None,
    asked: int | None,
    lease: int | None,
    dry_run: bool = False,
    count: int = 1,
    revision: int | None = None,
) -> int | None:
    """Let ``username`` take ``count`` more VMs of ``pool`` (the VM's pool, else its
    vm_type), each leased for ``lease`` seconds (None: no end), of which it ``asked`` for ``asked``
    (None: the default); the lease to give, shortened to the quota's max_lease where the
    default was longer. Holds the caller's lock until the transaction ends, when it counts.
    The rules are those at ``revision`` (see ``in_force.rules_in_force``), else read now.

    :raises QuotaExceededError: a quota refuses: the pool, the lease, the VMs or the
        VM-hours it would take.
    """
    if not enabled():
        return lease
    found = bounds_of(username, pool, revision)
    allowed = found["pools"]
    # A vm_type that is no pool's is not for the pools limit to judge.
    ruled = allowed.value is not None and pools.find(pool) is not None
    if ruled and pool not in allowed.value:
        _refuse(allowed, username, None, f"may not use pool {pool}", dry_run)
    longest = found["max_lease"]
    if longest.value is not None:
        if asked is not None and asked > longest.value:
            message = f"may lease for at most {longest.value} s, not {asked} s"
            _refuse(longest, username, asked, message, dry_run)
        if lease is None or lease > longest.value:
            lease = longest.value
    if not found.counted:
        return lease
    if not dry_run:
        hold_until_commit(f"quota:{username}")
    vms = found["max_vms"]
    if vms.value is not None:
        held = ledger.held_count([username], vms.pool)
        if held + count > vms.value:
            message = f"holds {held} of {vms.value} VMs{_of_pool(vms)}"
            if count > 1:
                message += f", and asks for {count} more"
            _refuse(vms, username, held, message, dry_run)
    more = (lease or 0) * count
    what = f"a lease of {more} s" if count == 1 else f"{count} leases of {lease or 0} s"
    _check_hours(found["max_vm_hours"], username, more, what, dry_run)
    return lease


def _check_hours(
    hours: Bound, username: str, more: float, what: str, dry_run: bool, row_id=None, so_far=0.0
) -> None:
    """Refuse ``more`` seconds held (``what`` they are, for the message) if they carry
    ``username`` past ``hours``; without any, refuse once the hours are used up. The
    assignment of row ``row_id`` counts ``so_far`` seconds, not its lease."""
    if hours.value is None:
        return
    now = clock.now()
    used = vm_hours([username], hours.pool, hours.period, now, leaving_out=row_id)
    used += so_far / 3600
    limit_seconds = hours.value * 3600
    over = used * 3600 + more > limit_seconds + 1e-6 if more else used * 3600 >= limit_seconds
    if over:
        message = f"has held {_hours(used * 3600)} of {hours.value:g} VM-hours{_of_pool(hours)}"
        message += f" in {_hours(hours.period)} h"
        if more:
            message += f"; {what} would make it {_hours(used * 3600 + more)}"
        _refuse(hours, username, round(used, 4), message, dry_run)


def admit_extend(username: str, pool: str | None, row_id: int, lease: int) -> None:
    """Let the holder ``username`` of the assignment of row ``row_id`` (in ``pool``)
    have it for ``lease`` seconds from now. Holds the holder's lock until the transaction
    ends.

    :raises QuotaExceededError: longer than the quota's max_lease, or beyond its VM-hours.
    """
    if not enabled():
        return
    found = bounds_of(username, pool)
    longest = found["max_lease"]
    if longest.value is not None and lease > longest.value:
        message = f"may lease for at most {longest.value} s, not {lease} s"
        _refuse(longest, username, lease, message, False)
    hours = found["max_vm_hours"]
    if hours.value is None:
        return
    hold_until_commit(f"quota:{username}")
    holding = ledger.open_span(row_id)
    now = clock.now()
    since = now - datetime.timedelta(seconds=hours.period)
    started = max(as_utc(holding.started_at), since) if holding is not None else now
    so_far = max(0.0, (now - started).total_seconds())
    what = f"a lease of {lease} s from now"
    _check_hours(hours, username, lease, what, False, row_id, so_far)
