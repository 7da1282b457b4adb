"""Views of the warm pools: what each holds, by state and cloud."""

from .. import pools
from ..pools import pool_to_dict
from ..pools.status import pool_detail_to_dict
from ..shapes import list_of
from .base import ApiView, answers, ok


class PoolsAPI(ApiView):
    """``GET /api/v1/pools``: every warm pool."""

    @answers({"pools": list_of(pool_to_dict)})
    def get(self):
        """Every warm pool: its VMs by state and cloud, each cloud's last failure."""
        return ok(pools=[pool_to_dict(spec) for spec in pools.every()])


class PoolAPI(ApiView):
    """``GET /api/v1/pools/<name>``: one warm pool."""

    @answers({"pool": pool_detail_to_dict})
    def get(self, name):
        """One warm pool: its VMs by state and cloud, each cloud's last failure, and its
        leased VMs with the ends of their leases."""
        return ok(pool=pool_detail_to_dict(pools.get(name)))
