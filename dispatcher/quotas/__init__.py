"""Quotas: how much of the pools one caller may hold, decided in the transaction of the
assign or the extend they would bind.

A quota binds the dispatcher account that asks (the token's user, the ``assigned_by``
of the ledger), whatever ``user`` its body names, with the limits of its rules
(``rules``): VMs at once, VM-hours in a rolling period, the longest lease, the pools a
role may use. Before it counts, ``admit`` takes the caller's lock until the transaction
ends (``locks.hold_until_commit``), so that of concurrent requests of one caller each
counts what the one before it committed: N assigns under a limit of k give k VMs, on
any number of workers and hosts.

The rules are the QUOTAS setting's, each replaced by the database's rule of the same
scope, name and pool (``put_rule``, ``delete_rule``): a change applies at the next
request of every worker. Only the local ledger keeps what quotas count.
"""

import datetime

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from .. import bookkeeping, clock, metrics, pools
from ..bookkeeping import ledger
from ..errors import (
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    QuotaExceededError,
)
from ..extensions import db
from ..locks import hold_until_commit
from ..models import QuotaRule, Role, User, roles_users
from ..serializers import as_utc, utc_iso
from ..shapes import (
    ARRAY,
    BOOLEAN,
    INTEGER,
    INTEGER_OR_NULL,
    OBJECT,
    TEXT,
    TEXT_OR_NULL,
    describes,
    one_of,
)
from .rules import DEFAULT, LIMITS, ROLE, SCOPES, USER, Bound, Bounds, Rule, bounds, check_pools
from .rules import from_setting as _from_setting

__all__ = [
    "LIMITS",
    "SCOPES",
    "admit_assign",
    "admit_extend",
    "delete_rule",
    "enabled",
    "every_rule",
    "init_app",
    "put_rule",
    "rule_to_dict",
    "rules_of",
    "standing",
]

EXTENSION = "dispatcher.quotas"


def init_app(app) -> None:
    """Read the QUOTAS setting's rules.

    :raises ConfigurationError: one line naming the rule and the field at fault, or
        QUOTAS beside a bookkeeping that cannot keep them (Cistern).
    """
    setting = app.config.get("QUOTAS")
    backend = bookkeeping.BACKENDS[app.config["ASSIGNMENT_BACKEND"]]
    if setting and not backend.keeps_quotas:
        raise ConfigurationError(
            "QUOTAS needs the local ledger (ASSIGNMENT_BACKEND='local'), which counts what "
            "each caller holds"
        )
    names = {spec.name for spec in app.extensions[pools.EXTENSION].values()}
    app.extensions[EXTENSION] = _from_setting(setting, names)


def enabled() -> bool:
    """Whether quotas apply: only where the bookkeeping keeps what they count."""
    return bookkeeping.backend().keeps_quotas


# -- the rules -------------------------------------------------------------------------


def _rule_of(row: QuotaRule) -> Rule:
    return Rule(
        row.scope,
        row.name or None,
        row.pool or None,
        dict(row.limits),
        source="database",
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def _rules(username: str | None = None) -> dict:
    """The rules by key, the database's in place of the setting's: those that may bind
    ``username`` (the default's, its own, every role's), or every rule without one."""
    found = dict(current_app.extensions[EXTENSION])
    query = select(QuotaRule)
    if username is not None:
        query = query.where(
            or_(
                QuotaRule.scope.in_([DEFAULT, ROLE]),
                (QuotaRule.scope == USER) & (QuotaRule.name == username),
            )
        )
    for row in db.session.scalars(query):
        rule = _rule_of(row)
        found[rule.key] = rule
    return found


def roles_of(username: str) -> list[str]:
    """The names of the roles of the user called ``username``."""
    query = (
        select(Role.name)
        .join(roles_users, roles_users.c.role_id == Role.id)
        .join(User, User.id == roles_users.c.user_id)
        .where(User.username == username)
    )
    return sorted(db.session.scalars(query))


def _bounds(username: str, pool: str | None) -> Bounds:
    found = _rules(username)
    # The caller's roles matter only where a role has a rule: one query less otherwise.
    roles = roles_of(username) if any(key[0] == ROLE for key in found) else []
    return bounds(found, username, roles, pool)


# -- counting --------------------------------------------------------------------------


def _vm_hours(holders, pool, period: int, now, leaving_out: int | None = None) -> float:
    """The VM-hours ``holders`` (None: everyone) held in ``pool`` (None: any) in the
    ``period`` seconds before ``now``: a leased VM still held for its whole lease, one
    without a lease until now, an ended assignment until its end. The assignment of the
    row ``leaving_out`` is not counted."""
    since = now - datetime.timedelta(seconds=period)
    total = 0.0
    for holding in ledger.holdings_since(holders, since, pool):
        if holding.assignment_id == leaving_out and holding.ended_at is None:
            continue
        total += _held_seconds(holding, since, now)
    return total / 3600


def _held_seconds(holding, since, now) -> float:
    start = max(as_utc(holding.started_at), since)
    if holding.ended_at is not None:
        end = as_utc(holding.ended_at)
    elif holding.lease_until is not None:
        end = max(as_utc(holding.lease_until), now)
    else:
        end = now
    return max(0.0, (end - start).total_seconds())


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
    username: str, pool: str | None, asked: int | None, lease: int | None, dry_run: bool = False
) -> int | None:
    """Let ``username`` take one more VM of ``pool`` (the VM's pool, else its vm_type),
    leased for ``lease`` seconds (None: no end), of which it ``asked`` for ``asked``
    (None: the default); the lease to give, shortened to the quota's max_lease where the
    default was longer. Holds the caller's lock until the transaction ends, when it counts.

    :raises QuotaExceededError: a quota refuses: the pool, the lease, the VMs or the
        VM-hours it would take.
    """
    if not enabled():
        return lease
    found = _bounds(username, pool)
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
        if held >= vms.value:
            message = f"holds {held} of {vms.value} VMs{_of_pool(vms)}"
            _refuse(vms, username, held, message, dry_run)
    more = lease or 0
    _check_hours(found["max_vm_hours"], username, more, f"a lease of {more} s", dry_run)
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
    used = _vm_hours([username], hours.pool, hours.period, now, leaving_out=row_id)
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
    found = _bounds(username, pool)
    longest = found["max_lease"]
    if longest.value is not None and lease > longest.value:
        message = f"may lease for at most {longest.value} s, not {lease} s"
        _refuse(longest, username, lease, message, False)
    hours = found["max_vm_hours"]
    if hours.value is None:
        return
    hold_until_commit(f"quota:{username}")
    holding = ledger.holding_of(row_id)
    now = clock.now()
    since = now - datetime.timedelta(seconds=hours.period)
    started = max(as_utc(holding.started_at), since) if holding is not None else now
    so_far = max(0.0, (now - started).total_seconds())
    what = f"a lease of {lease} s from now"
    _check_hours(hours, username, lease, what, False, row_id, so_far)


# -- what is used ----------------------------------------------------------------------


def _limit_use(bound: Bound, holders, now, counted: dict) -> dict:
    """A limit's value, what its holders use of it and what is left, and its rule."""
    entry = {"limit": bound.value, "rule": bound.rule.reference() if bound.rule else None}
    if bound.limit == "max_vms":
        key = ("vms", bound.pool)
        if key not in counted:
            counted[key] = ledger.held_count(holders, bound.pool)
        used = counted[key]
    elif bound.limit == "max_vm_hours":
        key = ("hours", bound.pool, bound.period)
        if key not in counted:
            counted[key] = round(_vm_hours(holders, bound.pool, bound.period, now), 4)
        used = counted[key]
        entry["period"] = bound.period
    else:
        return entry
    left = None if bound.value is None else max(0, round(bound.value - used, 4))
    return {**entry, "used": used, "left": left}


@describes("QuotaStanding", {"user": TEXT, "roles": ARRAY, "enabled": BOOLEAN, "pools": ARRAY})
def standing(username: str) -> dict:
    """What binds ``username``, in any pool and in each pool: each limit, what is used
    of it and what is left, and the rule it comes from."""
    roles = roles_of(username)
    found = _rules(username)
    now = clock.now()
    counted: dict = {}
    entries = []
    for pool in [None, *(spec.name for spec in pools.every())]:
        bound_here = bounds(found, username, roles, pool)
        allowed = bound_here["pools"]
        entry = {
            "pool": pool,
            "allowed": pool is None or allowed.value is None or pool in allowed.value,
        }
        for limit in ("max_vms", "max_vm_hours", "max_lease"):
            entry[limit] = _limit_use(bound_here[limit], [username], now, counted)
        entries.append(entry)
    return {"user": username, "roles": roles, "enabled": enabled(), "pools": entries}


def _holders(rule: Rule) -> list[str] | None:
    """Whom a rule counts: its user, its role's users, or everyone (None)."""
    if rule.scope == USER:
        return [rule.name]
    if rule.scope == ROLE:
        query = (
            select(User.username)
            .join(roles_users, roles_users.c.user_id == User.id)
            .join(Role, Role.id == roles_users.c.role_id)
            .where(Role.name == rule.name)
        )
        return list(db.session.scalars(query))
    return None


@describes(
    "QuotaRule",
    {
        "scope": one_of(*SCOPES),
        "name": TEXT_OR_NULL,
        "pool": TEXT_OR_NULL,
        "source": one_of("setting", "database"),
        "updated_by": TEXT_OR_NULL,
        "updated_at": TEXT_OR_NULL,
    },
    {
        "max_vms": INTEGER_OR_NULL,
        "max_vm_hours": {"type": ["number", "null"]},
        "period": INTEGER,
        "max_lease": INTEGER_OR_NULL,
        "pools": {"type": ["array", "null"], "items": TEXT},
        "used": OBJECT,
    },
)
def rule_to_dict(rule: Rule, with_use: bool = True) -> dict:
    """A rule as the API shows it: whose, for which pool, the limits it sets, where it
    comes from, and what those it binds use now."""
    shown = {
        **rule.reference(),
        **rule.limits,
        "source": rule.source,
        "updated_by": rule.updated_by,
        "updated_at": utc_iso(rule.updated_at) if rule.updated_at is not None else None,
    }
    if with_use:
        holders = _holders(rule)
        period = rule.limits.get("period") or Bound("max_vm_hours").period
        hours = _vm_hours(holders, rule.pool, period, clock.now())
        vms = ledger.held_count(holders, rule.pool)
        shown["used"] = {"vms": vms, "vm_hours": round(hours, 4), "period": period}
    return shown


def every_rule() -> list[dict]:
    """Every rule, the database's in place of the setting's, with what it binds uses."""
    order = {scope: index for index, scope in enumerate(SCOPES)}
    found = sorted(
        _rules().values(),
        key=lambda rule: (order[rule.scope], rule.name or "", rule.pool or ""),
    )
    return [rule_to_dict(rule) for rule in found]


def rules_of(scope: str, name: str | None) -> list[dict]:
    """The rules of one user, one role or the default, for any pool and for each pool.

    :raises NotFoundError: no such user or role.
    """
    _check_whose(scope, name)
    found = [rule for rule in _rules().values() if (rule.scope, rule.name) == (scope, name)]
    return [rule_to_dict(rule) for rule in sorted(found, key=lambda rule: rule.pool or "")]


# -- changing the rules ----------------------------------------------------------------


def _check_whose(scope: str, name: str | None) -> None:
    if scope == USER and db.session.scalar(select(User.id).where(User.username == name)) is None:
        raise NotFoundError(f"no user is called {name}")
    if scope == ROLE and db.session.scalar(select(Role.id).where(Role.name == name)) is None:
        raise NotFoundError(f"no role is called {name}")


def _checked(scope: str, name: str | None, pool: str | None) -> None:
    if not enabled():
        raise InvalidRequestError(
            "quotas need the local ledger (ASSIGNMENT_BACKEND=local), which counts what each "
            "caller holds"
        )
    _check_whose(scope, name)


def _row(scope: str, name: str | None, pool: str | None) -> QuotaRule | None:
    query = select(QuotaRule).where(
        QuotaRule.scope == scope, QuotaRule.name == (name or ""), QuotaRule.pool == (pool or "")
    )
    return db.session.scalars(query).first()


def put_rule(scope: str, name: str | None, body: dict, by: str) -> dict:
    """Set the database's rule of ``scope`` and ``name`` for ``body["pool"]`` (if any) to
    the limits of ``body``, in place of what it set before; the rule as shown. Not
    committed.

    :raises NotFoundError: no such user or role.
    :raises InvalidRequestError: an unknown pool, or a bookkeeping without quotas.
    """
    limits = dict(body)
    pool = limits.pop("pool", None)
    limits.pop("auth_token", None)
    _checked(scope, name, pool)
    check_pools("", limits, pool, {spec.name for spec in pools.every()})
    row = _row(scope, name, pool)
    if row is None:
        try:
            with db.session.begin_nested():
                row = QuotaRule(scope=scope, name=name or "", pool=pool or "", limits=limits)
                db.session.add(row)
        except IntegrityError:
            raise ConflictError(
                f"the quota rule of {Rule(scope, name, pool, {}).label()} was set by another "
                "request at the same time: try again"
            ) from None
    row.limits = limits
    row.updated_by = by
    row.updated_at = clock.now()
    db.session.flush()
    return rule_to_dict(_rule_of(row))


def delete_rule(scope: str, name: str | None, pool: str | None) -> dict | None:
    """Remove the database's rule of ``scope``, ``name`` and ``pool``; the setting's rule
    that applies again in its place, if any. Not committed.

    :raises NotFoundError: no such user or role, or the database has no such rule.
    """
    _checked(scope, name, pool)
    row = _row(scope, name, pool)
    if row is None:
        whose = Rule(scope, name, pool, {}).label()
        raise NotFoundError(f"no quota rule of {whose} was set here")
    db.session.delete(row)
    db.session.flush()
    setting = current_app.extensions[EXTENSION].get((scope, name, pool))
    return rule_to_dict(setting) if setting is not None else None
