"""Views of the warm pools: what each holds, by state and cloud; an admin's override."""

from flask_security import current_user

from .. import operations, pools
from ..pools import passes, pool_to_dict
from ..pools.status import level_to_dict, pool_detail_to_dict
from ..shapes import TEXT, list_of
from ..validation import POOL_OVERRIDE
from .base import ApiView, accepts, admin_required, answers, ok, query
from .idempotency import idempotent
from .parameters import whole_number


class PoolsAPI(ApiView):
    """``GET /api/v1/pools``: every warm pool."""

    @answers({"pools": list_of(pool_to_dict)})
    def get(self):
        """Every warm pool: its sizes in force and configured, its override, its VMs by
        state and cloud, each cloud's last failure."""
        return ok(pools=[pool_to_dict(spec) for spec in pools.every()])


class PoolAPI(ApiView):
    """``/api/v1/pools/<name>``: one warm pool, and an admin's override of it."""

    @answers({"pool": pool_detail_to_dict})
    def get(self, name):
        """One warm pool: its sizes in force and configured, its override, its VMs by state
        and cloud, each cloud's last failure, and its leased VMs with the ends of their
        leases."""
        return ok(pool=pool_detail_to_dict(pools.get(name)))

    @admin_required
    @idempotent
    @accepts(POOL_OVERRIDE)
    @answers({"pool": pool_detail_to_dict})
    def patch(self, name, body):
        """Override the pool's ``min_ready`` and ``max_total`` (null: back to the
        configured one), pause its creations (``paused``) or drain it (``draining``), for
        every worker's next pass and until cleared; a field left out stays as it was."""
        spec = pools.get(name)
        return ok(pool=operations.override_pool(spec, body, current_user.username))

    @admin_required
    @idempotent
    @answers({"result": TEXT, "pool": pool_detail_to_dict})
    def delete(self, name):
        """Clear the pool's override: POOLS applies again at every worker's next pass."""
        spec = pools.get(name)
        shown = operations.clear_pool_override(spec, current_user.username)
        return ok(result=f"pool {spec.name}: override cleared", pool=shown)


class PoolLevelsAPI(ApiView):
    """``GET /api/v1/pools/<name>/levels[?after=ID]``: a pool's levels over time."""

    @query(after=whole_number("after", 2**31 - 1))
    @answers({"levels": list_of(level_to_dict)})
    def get(self, name, after):
        """The pool's VMs by state at the end of each pass of the pool manager, oldest
        first: the newest POOLS_LEVELS_KEPT (six hours at a pass every 15 s); only those
        after the level ``after`` (its ``id``) if given, for a chart that keeps up."""
        spec = pools.get(name)
        return ok(levels=[level_to_dict(level) for level in passes.levels(spec.name, after)])
