"""The clouds: the configured pool of libcloud drivers and the service over it."""

from flask import current_app

from .firewall import Rule
from .pool import DEFAULT_CLOUD, CloudSpec, DriverPool, parse_farm
from .service import CloudService

__all__ = [
    "DEFAULT_CLOUD",
    "CloudService",
    "CloudSpec",
    "DriverPool",
    "firewall_rule",
    "init_app",
    "service",
]

EXTENSION = "dispatcher.clouds"


def init_app(app) -> None:
    """Parse CLOUD_FARM and attach the cloud service to ``app``.

    :raises ConfigurationError: the farm cannot work (see ``parse_farm``).
    """
    pool = DriverPool(parse_farm(app.config["CLOUD_FARM"]), timeout=app.config["CLOUD_TIMEOUT"])
    app.extensions[EXTENSION] = CloudService(
        pool,
        max_iterations=app.config["MAX_ITERATIONS"],
        image_cache_seconds=app.config["IMAGE_CACHE_SECONDS"],
        static_cache_seconds=app.config["SIZE_CACHE_SECONDS"],
    )


def service() -> CloudService:
    """The cloud service of the current app."""
    return current_app.extensions[EXTENSION]


def firewall_rule(protocol: str, from_port: int, to_port: int | None, cidr: str) -> Rule:
    """A port range to open or close; ``to_port`` defaults to ``from_port``."""
    return Rule(protocol, from_port, from_port if to_port is None else to_port, cidr)
