"""Warm pools: per vm_type, VMs started ahead of time on an ordered list of clouds, so that
an assign by type answers at once. The worker's pool pass keeps them filled
(``operations.tend_pool``); ``operations.assign_from_pool`` hands them out."""

from flask import current_app

from .. import bookkeeping, metrics
from ..config import Config, check_number
from ..errors import ConfigurationError, NotFoundError
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

    :raises ConfigurationError: one line naming the pool and the key at fault, a bad
        POOLS_LEVELS_KEPT, or a request setting beside a bookkeeping without pools.
    """
    config = app.config
    check_number(config, "POOLS_LEVELS_KEPT", least=1, whole=True)
    check_number(config, "POOLS_CHECK_CONCURRENCY", least=1, whole=True)
    backend = config["ASSIGNMENT_BACKEND"]
    keeps_pools = bookkeeping.BACKENDS[backend].keeps_pools
    specs = app.extensions[EXTENSION] = parse_pools(
        config.get("POOLS"), config["CLOUD_FARM"], backend, keeps_pools
    )
    if not keeps_pools:
        _refuse_request_settings(config, backend)
    metrics.register_collector(app, PoolCollector(list(specs.values())))


# The settings of the requests that wait in line, which only pools serve.
REQUEST_SETTINGS = (
    "REQUEST_DEFAULT_EXPIRY",
    "REQUEST_MAX_EXPIRY",
    "REQUEST_MAX_VMS",
    "REQUEST_WEBHOOK_URL",
)


def _refuse_request_settings(config, backend: str) -> None:
    """Requests are served from the pools: beside a bookkeeping without pools, a request
    setting changed from its default is a mistake of the configuration.

    :raises ConfigurationError: naming the first such setting.
    """
    for name in REQUEST_SETTINGS:
        if config.get(name) != getattr(Config, name):
            raise ConfigurationError(
                f"{name}: requests need the local ledger (ASSIGNMENT_BACKEND='local'), not "
                f"{backend!r}: they are served from its pools"
            )


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
