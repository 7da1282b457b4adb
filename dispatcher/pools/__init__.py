"""Warm pools: per vm_type, VMs started ahead of time on an ordered list of clouds, so that
an assign by type answers at once. The worker's pool pass keeps them filled
(``operations.tend_pool``); ``operations.assign_from_pool`` hands them out."""

from flask import current_app

from .. import bookkeeping, metrics
from ..config import check_number
from ..errors import NotFoundError
from .spec import PoolCloud, PoolSpec, ReadyCheck, parse_pools
from .status import PoolCollector, pool_to_dict

__all__ = [
    "PoolCloud",
    "PoolSpec",
    "ReadyCheck",
    "every",
    "find",
    "get",
    "init_app",
    "pool_to_dict",
]

EXTENSION = "dispatcher.pools"


def init_app(app) -> None:
    """Parse POOLS against the clouds and the bookkeeping; show each pool's VMs by state
    on /metrics.

    :raises ConfigurationError: one line naming the pool and the key at fault, or a bad
        POOLS_LEVELS_KEPT.
    """
    config = app.config
    check_number(config, "POOLS_LEVELS_KEPT", least=1, whole=True)
    check_number(config, "POOLS_CHECK_CONCURRENCY", least=1, whole=True)
    backend = config["ASSIGNMENT_BACKEND"]
    keeps_pools = bookkeeping.BACKENDS[backend].keeps_pools
    specs = app.extensions[EXTENSION] = parse_pools(
        config.get("POOLS"), config["CLOUD_FARM"], backend, keeps_pools
    )
    metrics.register_collector(app, PoolCollector(list(specs.values())))


def _pools() -> dict[str, PoolSpec]:
    return current_app.extensions[EXTENSION]


def every() -> list[PoolSpec]:
    """Every configured pool, in the order of POOLS."""
    return list(_pools().values())


def find(name: str | None) -> PoolSpec | None:
    """The pool called ``name``, or None."""
    return _pools().get(name) if name is not None else None


def get(name: str) -> PoolSpec:
    """The pool called ``name``.

    :raises NotFoundError: no such pool.
    """
    found = find(name)
    if found is None:
        raise NotFoundError(f"Unknown pool: {name}")
    return found
