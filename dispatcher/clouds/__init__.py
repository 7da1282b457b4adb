"""The clouds: the configured pool, and what can be done on one cloud, by resource.

A request resolves its cloud once, at the edge (``get``), and hands the ``Cloud`` to
the functions of ``nodes``, ``catalog``, ``volumes``, ``firewall`` and ``health``.
"""

from flask import current_app

from .. import metrics, serializers
from ..config import check_number
from .breaker import CircuitBreaker, CircuitCollector
from .cloud import Cloud
from .pool import DEFAULT_CLOUD, CloudPool, CloudSpec, parse_farm
from .refusals import is_capacity_refusal

__all__ = [
    "DEFAULT_CLOUD",
    "Cloud",
    "CloudPool",
    "CloudSpec",
    "every",
    "get",
    "init_app",
    "is_capacity_refusal",
    "served",
]

EXTENSION = "dispatcher.clouds"


def init_app(app) -> None:
    """Parse CLOUD_FARM into the app's cloud pool (drivers are built on first use), and
    show each cloud's circuit on /metrics.

    :raises ConfigurationError: the farm cannot work (see ``parse_farm``).
    """
    config = app.config
    check_number(config, "CIRCUIT_FAILURES", whole=True, note=" (0: off)")
    check_number(config, "CIRCUIT_SECONDS", above=True, unit=" of seconds")
    failures, seconds = config["CIRCUIT_FAILURES"], config["CIRCUIT_SECONDS"]
    pool = app.extensions[EXTENSION] = CloudPool(
        {
            name: Cloud(
                spec,
                timeout=config["CLOUD_TIMEOUT"],
                max_iterations=config["MAX_ITERATIONS"],
                image_cache_seconds=config["IMAGE_CACHE_SECONDS"],
                static_cache_seconds=config["SIZE_CACHE_SECONDS"],
                circuit=CircuitBreaker(name, failures, seconds),
            )
            for name, spec in parse_farm(config["CLOUD_FARM"]).items()
        }
    )
    metrics.register_collector(app, CircuitCollector(pool))


def _pool() -> CloudPool:
    return current_app.extensions[EXTENSION]


def get(name: str | None) -> Cloud:
    """The cloud called ``name`` (``default`` for None).

    :raises UnknownCloudError: no such cloud.
    """
    return _pool().get(name)


def every() -> list[Cloud]:
    """Every cloud of the pool, ``default`` first."""
    return list(_pool())


def served() -> list[dict]:
    """The pool as the original listed it: name, engine and host of each cloud."""
    return [serializers.cloud_to_dict(cloud) for cloud in every()]
