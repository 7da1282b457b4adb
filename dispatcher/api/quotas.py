"""Views of the quotas: every rule and its use (admins), one user's, role's or the
default's rules, and each caller's own standing."""

from flask_security import current_user

from .. import operations, quotas
from ..quotas import rule_to_dict, standing
from ..shapes import TEXT, list_of
from ..validation import QUOTA
from .base import ApiView, accepts, admin_required, answers, ok, query
from .idempotency import idempotent
from .parameters import text

RULE_ANSWER = {"rule": rule_to_dict}


class QuotasAPI(ApiView):
    """``GET /api/v1/quotas``: every quota rule (admins)."""

    @admin_required
    @answers({"rules": list_of(rule_to_dict)})
    def get(self):
        """Every quota rule, the setting's and the admins', each with what those it binds
        use now (VMs held, VM-hours in its period)."""
        return ok(rules=quotas.every_rule())


class QuotaAPI(ApiView):
    """``/api/v1/quotas/<user|role>/<name>`` and ``/api/v1/quotas/default``: the rules
    of one user, one role or everyone (admins)."""

    @admin_required
    @answers({"rules": list_of(rule_to_dict)})
    def get(self, scope, name):
        """The rules of the user, the role or the default, for any pool and each pool."""
        return ok(rules=quotas.rules_of(scope, name))

    @admin_required
    @idempotent
    @accepts(QUOTA)
    @answers(RULE_ANSWER)
    def put(self, scope, name, body):
        """Set the rule (for ``pool`` if given) to the limits of the body, at once on every
        worker: ``max_vms``, ``max_vm_hours`` (in ``period`` seconds, a day by default),
        ``max_lease`` (seconds), ``pools``. A limit left out comes from the next rule; a
        null one means no limit."""
        return ok(rule=operations.set_quota(scope, name, body, current_user.username))

    @admin_required
    @idempotent
    @query(pool=text("pool"))
    @answers({"result": TEXT}, optional=RULE_ANSWER)
    def delete(self, scope, name, pool):
        """Remove the rule set here (for ``pool`` if given); ``rule`` is the QUOTAS
        setting's rule that applies again in its place, if there is one."""
        restored = operations.clear_quota(scope, name, pool, current_user.username)
        whose = "default" if name is None else f"{scope} {name}"
        where = f" for pool {pool}" if pool is not None else ""
        answer = {"result": f"quota rule of {whose}{where} removed"}
        return ok(**answer, **({"rule": restored} if restored is not None else {}))


class MyQuotaAPI(ApiView):
    """``GET /api/v1/quotas/me``: what binds the caller."""

    @answers({"quota": standing})
    def get(self):
        """The caller's standing, in any pool and in each pool: each limit, what is used
        of it, what is left, and the rule it comes from."""
        return ok(quota=quotas.standing(current_user.username))
