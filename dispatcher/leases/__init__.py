"""Leases: an assignment that ends on time.

An assign may carry a lease in seconds; without one, its pool's ``lease`` or
DEFAULT_LEASE applies, and with neither the assignment never ends. A pool's
``max_lease`` and MAX_LEASE cap every lease. The ledger keeps each assigned VM's end
(``expires_at``) and who assigned it (``assigned_by``): only they, or an admin, may
extend or release a leased VM. The worker releases what has ended
(``operations.expire_leases``) and tells the lease webhooks.
"""

import datetime
from dataclasses import dataclass

from flask import current_app

from .. import bookkeeping, clock, pools, webhooks
from ..config import check_number
from ..errors import ConfigurationError, ForbiddenError, InvalidRequestError
from ..validation import LEASE_LONGEST

__all__ = [
    "Terms",
    "check_holder",
    "enabled",
    "init_app",
    "refuse_without_ledger",
    "resolve",
    "terms",
    "until",
]


@dataclass(frozen=True)
class Terms:
    """The lease an assign gets by default and the longest it may ask for (seconds, None
    for none), with the setting the cap comes from."""

    default: int | None
    cap: int | None
    cap_setting: str | None


def terms(spec=None, config=None) -> Terms:
    """The lease terms of a VM of the pool ``spec`` (None: of no pool)."""
    config = config if config is not None else current_app.config
    default = (spec.lease if spec is not None else None) or config["DEFAULT_LEASE"]
    caps = []
    if spec is not None and spec.max_lease is not None:
        caps.append((spec.max_lease, f"max_lease of pool {spec.name}"))
    if config["MAX_LEASE"] is not None:
        caps.append((config["MAX_LEASE"], "MAX_LEASE"))
    cap, setting = min(caps) if caps else (None, None)
    return Terms(default, cap, setting)


def enabled() -> bool:
    """Whether assignments can be leased: only a bookkeeping that keeps their ends."""
    return bookkeeping.backend().keeps_leases


def refuse_without_ledger(requested: int | None) -> None:
    """A lease is asked of a bookkeeping that cannot keep it (Cistern).

    :raises InvalidRequestError: it is.
    """
    if requested is not None and not enabled():
        raise InvalidRequestError("lease: leases need the local ledger (ASSIGNMENT_BACKEND=local)")


def resolve(requested: int | None, spec=None) -> int | None:
    """The lease, in seconds, of an assign that asked for ``requested`` (None: none asked)
    of a VM of the pool ``spec``; None: the assignment never ends.

    :raises InvalidRequestError: longer than the cap, or a lease asked of a bookkeeping
        that cannot keep it.
    """
    refuse_without_ledger(requested)
    agreed = terms(spec)
    seconds = requested if requested is not None else agreed.default
    if seconds is not None and agreed.cap is not None and seconds > agreed.cap:
        raise InvalidRequestError(
            f"lease: {seconds} s is longer than the cap of {agreed.cap} s ({agreed.cap_setting})"
        )
    return seconds


def until(seconds: int | None) -> datetime.datetime | None:
    """When a lease of ``seconds`` that starts now ends."""
    if seconds is None:
        return None
    return clock.now() + datetime.timedelta(seconds=seconds)


def check_holder(assigned_by: str | None, caller: str, admin: bool, what: str, node) -> None:
    """Only the caller who assigned the VM, or an admin, may ``what`` (extend its lease,
    release it).

    :raises ForbiddenError: someone else.
    """
    if admin or (assigned_by is not None and caller == assigned_by):
        return
    holder = f"{assigned_by} assigned it" if assigned_by else "its assigner is not on record"
    raise ForbiddenError(
        f"Forbidden: only the caller who assigned node {node}, or an admin, may {what} ({holder})"
    )


def _seconds(config, key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LEASE_LONGEST:
        raise ConfigurationError(
            f"{key} must be a whole number of seconds from 1 to {LEASE_LONGEST}"
        )
    return value


def init_app(app) -> None:
    """Check the lease settings against each other and the pools.

    :raises ConfigurationError: one line naming the setting at fault.
    """
    config = app.config
    _seconds(config, "MAX_LEASE")
    keeps_leases = bookkeeping.BACKENDS[config["ASSIGNMENT_BACKEND"]].keeps_leases
    if _seconds(config, "DEFAULT_LEASE") is not None and not keeps_leases:
        raise ConfigurationError(
            "DEFAULT_LEASE needs the local ledger (ASSIGNMENT_BACKEND='local'), which keeps "
            "the ends of the leases"
        )
    check_number(config, "LEASE_WARNING_SECONDS", unit=" of seconds")
    for spec in app.extensions[pools.EXTENSION].values():
        if spec.webhook_url is not None:
            where = f"POOLS[{spec.name!r}]: webhook_url"
            webhooks.check_url(where, spec.webhook_url, config.get("LEASE_WEBHOOK_SECRET"))
    for spec in [None, *app.extensions[pools.EXTENSION].values()]:
        agreed = terms(spec, config)
        if agreed.default is None or agreed.cap is None or agreed.default <= agreed.cap:
            continue
        source = "DEFAULT_LEASE"
        if spec is not None and spec.lease is not None:
            source = f"POOLS[{spec.name!r}]: lease"
        raise ConfigurationError(
            f"{source} ({agreed.default}) is longer than {agreed.cap_setting} ({agreed.cap})"
        )
