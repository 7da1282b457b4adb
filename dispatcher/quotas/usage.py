"""What quotas count, and what each caller and each rule uses: the VMs held now (the
ledger's assigned rows) and the VM-hours of a period (its assigned spans)."""

import datetime

from sqlalchemy import select

from .. import clock, pools
from ..bookkeeping import ledger
from ..extensions import db
from ..models import Role, User, roles_users
from ..serializers import utc_iso
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
from .in_force import check_whose, enabled, roles_of, rules_in_force
from .rules import PERIOD_DEFAULT, ROLE, SCOPES, USER, Bound, Rule, bounds


def vm_hours(holders, pool, period: int, now, leaving_out: int | None = None) -> float:
    """The VM-hours ``holders`` (None: everyone) held in ``pool`` (None: any) in the
    ``period`` seconds before ``now``: a leased VM still held for its whole lease, one
    without a lease until now, an ended assignment until its end. The assignment of the
    row ``leaving_out`` is not counted."""
    since = now - datetime.timedelta(seconds=period)
    return ledger.held_seconds(holders, since, now, pool, leaving_out) / 3600


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
            counted[key] = round(vm_hours(holders, bound.pool, bound.period, now), 4)
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
    found = rules_in_force(username)
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
        "used": OBJECT,
    },
    {
        "max_vms": INTEGER_OR_NULL,
        "max_vm_hours": {"type": ["number", "null"]},
        "period": INTEGER,
        "max_lease": INTEGER_OR_NULL,
        "pools": {"type": ["array", "null"], "items": TEXT},
    },
)
def rule_to_dict(rule: Rule) -> dict:
    """A rule as the API shows it: whose, for which pool, the limits it sets, where it
    comes from, and what those it binds use now."""
    holders = _holders(rule)
    period = rule.limits.get("period") or PERIOD_DEFAULT
    hours = vm_hours(holders, rule.pool, period, clock.now())
    return {
        **rule.reference(),
        **rule.limits,
        "source": rule.source,
        "updated_by": rule.updated_by,
        "updated_at": utc_iso(rule.updated_at) if rule.updated_at is not None else None,
        "used": {
            "vms": ledger.held_count(holders, rule.pool),
            "vm_hours": round(hours, 4),
            "period": period,
        },
    }


def every_rule() -> list[dict]:
    """Every rule, the database's in place of the setting's, with what it binds uses."""
    order = {scope: index for index, scope in enumerate(SCOPES)}
    found = sorted(
        rules_in_force().values(),
        key=lambda rule: (order[rule.scope], rule.name or "", rule.pool or ""),
    )
    return [rule_to_dict(rule) for rule in found]


def rules_of(scope: str, name: str | None) -> list[dict]:
    """The rules of one user, one role or the default, for any pool and for each pool.

    :raises NotFoundError: no such user or role.
    """
    check_whose(scope, name)
    found = [rule for rule in rules_in_force().values() if (rule.scope, rule.name) == (scope, name)]
    return [rule_to_dict(rule) for rule in sorted(found, key=lambda rule: rule.pool or "")]
