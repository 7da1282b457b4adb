"""Quota rules: what each sets, and which rule's limit binds a caller in a pool.

A rule belongs to a user, a role or everyone (``default``), perhaps only for one pool,
and sets some of the limits (``LIMITS``); a limit it leaves out comes from the next rule,
and a null one means no limit. For each limit the most specific rule that sets it wins:
the user's for the pool, the user's, the roles' for the pool or else their own, the
default's for the pool, the default's. Of a caller's several roles the most generous
wins. A rule in the database takes the place of the QUOTAS setting's rule of the same
scope, name and pool.
"""

from dataclasses import dataclass, field

from schema import Optional

from ..errors import ConfigurationError, InvalidRequestError
from ..fields import ClosedSchema, Text
from ..validation import QUOTA_LIMITS, validate

USER, ROLE, DEFAULT = "user", "role", "default"
SCOPES = (USER, ROLE, DEFAULT)
# The limits a rule may set; ``period`` goes with max_vm_hours.
LIMITS = ("max_vms", "max_vm_hours", "max_lease", "pools")
PERIOD_DEFAULT = 24 * 3600

# One rule of the QUOTAS setting: the API's body, with its scope and name.
SETTING_RULE = ClosedSchema(
    {
        "scope": Text("scope"),
        Optional("name"): Text("name"),
        Optional("pool"): Text("pool", longest=80),
        **QUOTA_LIMITS,
    },
    name="quota_setting",
)


@dataclass(frozen=True)
class Rule:
    """One quota rule: whose (``scope``, ``name``; None for the default), for which pool
    (None: any), the limits it sets, and where it comes from."""

    scope: str
    name: str | None
    pool: str | None
    limits: dict
    source: str = "setting"  # or "database"
    updated_by: str | None = None
    updated_at: object = None

    @property
    def key(self) -> tuple:
        return (self.scope, self.name, self.pool)

    def sets(self, limit: str) -> bool:
        return limit in self.limits

    def label(self, with_pool: bool = True) -> str:
        """How a message names the rule: "role agent", "user ada for pool web", "default"."""
        whose = DEFAULT if self.scope == DEFAULT else f"{self.scope} {self.name}"
        return f"{whose} for pool {self.pool}" if with_pool and self.pool is not None else whose

    def reference(self) -> dict:
        return {"scope": self.scope, "name": self.name, "pool": self.pool}


@dataclass(frozen=True)
class Bound:
    """The limit that binds: its value (None: none), the rule it comes from (None: no
    rule sets it), the pool its count is narrowed to (the rule's), and for max_vm_hours
    the period."""

    limit: str
    value: object = None
    rule: Rule | None = None
    period: int = PERIOD_DEFAULT

    @property
    def pool(self) -> str | None:
        return self.rule.pool if self.rule is not None else None


@dataclass(frozen=True)
class Bounds:
    """Every limit that binds one caller in one pool (None: any)."""

    pool: str | None
    by_limit: dict = field(default_factory=dict)

    def __getitem__(self, limit: str) -> Bound:
        return self.by_limit[limit]

    @property
    def counted(self) -> bool:
        """Whether anything must be counted: a bound on VMs or VM-hours."""
        return any(self[limit].value is not None for limit in ("max_vms", "max_vm_hours"))


def _more_generous(one, other) -> bool:
    """Whether the value ``one`` allows more than ``other`` (None allows everything)."""
    if other is None:
        return False
    return one is None or one > other


def _bound(limit: str, rule: Rule, value=None) -> Bound:
    period = rule.limits.get("period") or PERIOD_DEFAULT
    return Bound(limit, rule.limits[limit] if value is None else value, rule, period)


def bound(rules: dict, limit: str, username: str, roles, pool: str | None) -> Bound:
    """The bound of ``limit`` on ``username`` (with ``roles``) in ``pool``, by ``rules``
    (``Rule.key`` to rule)."""
    pools = [pool, None] if pool is not None else [None]

    def setting(scope, name):
        for in_pool in pools:
            rule = rules.get((scope, name, in_pool))
            if rule is not None and rule.sets(limit):
                return rule
        return None

    rule = setting(USER, username)
    if rule is not None:
        return _bound(limit, rule)
    votes = [rule for rule in (setting(ROLE, role) for role in sorted(roles)) if rule]
    if votes and limit == "pools":
        everything = [rule for rule in votes if rule.limits[limit] is None]
        if everything:
            return _bound(limit, everything[0])
        allowed = set().union(*(rule.limits[limit] for rule in votes))
        return _bound(limit, votes[0], sorted(allowed))
    if votes:
        best = votes[0]
        for rule in votes[1:]:
            if _more_generous(rule.limits[limit], best.limits[limit]):
                best = rule
        return _bound(limit, best)
    rule = setting(DEFAULT, None)
    return _bound(limit, rule) if rule is not None else Bound(limit)


def bounds(rules: dict, username: str, roles, pool: str | None) -> Bounds:
    """Every limit's bound on ``username`` in ``pool``."""
    return Bounds(pool, {limit: bound(rules, limit, username, roles, pool) for limit in LIMITS})


def check_pools(where: str, limits: dict, pool: str | None, known, error=InvalidRequestError):
    """The pools a rule names are configured ones.

    :raises error: one naming the first unknown pool.
    """
    named = ([pool] if pool is not None else []) + list(limits.get("pools") or [])
    for name in named:
        if name not in known:
            field_name = "pool" if name == pool else "pools"
            raise error(f"{where}{field_name}: no pool is called {name}")


def from_setting(setting, pool_names) -> dict:
    """The QUOTAS setting's rules by key.

    :raises ConfigurationError: one line naming the rule and the field at fault.
    """
    if setting is None:
        return {}
    if not isinstance(setting, list | tuple):
        raise ConfigurationError("QUOTAS must be a list of rules ({'scope': ..., limits})")
    found = {}
    for index, entry in enumerate(setting):
        where = f"QUOTAS[{index}]: "
        try:
            body = validate(SETTING_RULE, entry)
        except InvalidRequestError as exc:
            raise ConfigurationError(f"{where}{exc.message}") from None
        scope = body.pop("scope")
        name = body.pop("name", None)
        pool = body.pop("pool", None)
        if scope not in SCOPES:
            raise ConfigurationError(f"{where}scope: one of {', '.join(SCOPES)}")
        if (scope == DEFAULT) != (name is None):
            need = "no name" if scope == DEFAULT else "the name of the " + scope
            raise ConfigurationError(f"{where}name: a {scope} rule takes {need}")
        check_pools(where, body, pool, pool_names, error=ConfigurationError)
        rule = Rule(scope, name, pool, body)
        if rule.key in found:
            raise ConfigurationError(f"{where}a second rule for {rule.label()}")
        found[rule.key] = rule
    return found
