"""Views of the warm pools: what each holds, by state and cloud."""

from .. import pools
from ..pools import passes, pool_to_dict
from ..pools.status import level_to_dict, pool_detail_to_dict
from ..shapes import list_of
from .base import ApiView, answers, ok, query
from .parameters import whole_number


class PoolsAPI(ApiView):
    """``GET /api/v1/pools``: every warm pool."""

    @answers({"pools": list_of(pool_to_dict)})
    def get(self):
        """Every warm pool: its sizes in force and configured, its override, its VMs by
        state and cloud, each cloud's last failure."""
        return ok(pools=[pool_to_dict(spec) for spec in pools.every()])


class PoolAPI(ApiView):
    """``GET /api/v1/pools/<name>``: one warm pool."""

    @answers({"pool": pool_detail_to_dict})
    def get(self, name):
        """One warm pool: its sizes in force and configured, its override, its VMs by state
        and cloud, each cloud's last failure, and its leased VMs with the ends of their
        leases."""
        return ok(pool=pool_detail_to_dict(pools.get(name)))


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
