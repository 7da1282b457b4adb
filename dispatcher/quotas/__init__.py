"""Quotas: how much of the pools one caller may hold, decided in the transaction of the
assign or the extend they would bind.

A quota binds the dispatcher account that asks (the token's user, the ``assigned_by``
of the ledger), whatever ``user`` its body names, with the limits of its rules
(``rules.py``): VMs at once, VM-hours in a rolling period, the longest lease, the pools
a role may use. Before it counts, ``admission.py`` takes the caller's lock until the
transaction ends (``locks.hold_until_commit``), so that of concurrent requests of one
caller each counts what the one before it committed: N assigns under a limit of k give k
VMs, on any number of workers and hosts.

The rules in force (``in_force.py``) are the QUOTAS setting's, each replaced by the
database's rule of the same scope, name and pool (``changes.py``): a change applies at
the next request of every worker. Each process keeps the database's rules while their
revision holds (``revisions``), which an assign reads in its own statements.
``usage.py`` counts what a caller or a rule uses. Only the local ledger keeps what quotas
count.
"""

from .. import bookkeeping, pools
from ..errors import ConfigurationError
from .admission import admit_assign, admit_extend
from .changes import delete_rule, put_rule
from .in_force import EXTENSION, enabled, guessed_revision, revision_now, roles_of
from .rules import LIMITS, SCOPES
from .rules import from_setting as _from_setting
from .usage import every_rule, rule_to_dict, rules_of, standing

__all__ = [
    "LIMITS",
    "SCOPES",
    "admit_assign",
    "admit_extend",
    "delete_rule",
    "enabled",
    "every_rule",
    "guessed_revision",
    "init_app",
    "put_rule",
    "revision_now",
    "roles_of",
    "rule_to_dict",
    "rules_of",
    "standing",
]


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
