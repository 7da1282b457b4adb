"""The cloud pool: CLOUD_FARM entries parsed once, libcloud drivers built on first use."""

import os
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from libcloud.common.types import LibcloudError
from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider

from ..errors import CloudError, ConfigurationError, UnknownCloudError

DEFAULT_CLOUD = "default"

# The original's engine names that libcloud no longer has: its EC2 driver per region.
# There never was an "eu-east" EC2 region; eu-central-1 is the nearest one.
ORIGINAL_ENGINES = {
    "ec2_us_west": (Provider.EC2, "us-west-1"),
    "ec2_us_east": (Provider.EC2, "us-east-1"),
    "ec2_eu_west": (Provider.EC2, "eu-west-1"),
    "ec2_eu_east": (Provider.EC2, "eu-central-1"),
}

FARM_KEYS = {"ENGINE", "USER", "PASSWORD", "USER_ENV", "PASSWORD_ENV", "EXTRA_PARAMS"}


@dataclass(frozen=True)
class CloudSpec:
    """One CLOUD_FARM entry, resolved: which driver, with which credentials."""

    name: str
    engine: str
    provider: str
    key: Any = None
    secret: str | None = field(default=None, repr=False)
    params: dict = field(default_factory=dict, repr=False)

    @property
    def host(self) -> str | None:
        """The host the cloud is reached at, where the configuration says it."""
        if self.params.get("host"):
            return str(self.params["host"])
        auth_url = self.params.get("ex_force_auth_url")
        return urlparse(auth_url).hostname if auth_url else None


def _credential(name: str, entry: dict, key: str, environ) -> Any:
    variable = entry.get(f"{key}_ENV")
    if variable is None:
        return entry.get(key)
    if variable not in environ:
        raise ConfigurationError(
            f"cloud {name!r}: {key}_ENV names {variable}, which is not set in the environment"
        )
    return environ[variable]


def parse_cloud(name: str, entry: dict, environ=os.environ) -> CloudSpec:
    """Resolve one CLOUD_FARM entry.

    :raises ConfigurationError: unknown keys or ENGINE, or a credential variable unset.
    """
    if not isinstance(entry, dict) or "ENGINE" not in entry:
        raise ConfigurationError(f"cloud {name!r}: an entry needs at least ENGINE")
    unknown = set(entry) - FARM_KEYS
    if unknown:
        raise ConfigurationError(f"cloud {name!r}: unknown keys {', '.join(sorted(unknown))}")
    engine = str(entry["ENGINE"])
    provider, region = ORIGINAL_ENGINES.get(engine.lower(), (engine.lower(), None))
    # Either libcloud's provider value ("digitalocean") or its constant ("DIGITAL_OCEAN").
    provider = getattr(Provider, engine.upper(), provider) if not region else provider
    try:
        get_driver(provider)
    except AttributeError:
        raise ConfigurationError(
            f"cloud {name!r}: ENGINE {engine!r} is not a libcloud compute provider"
        ) from None
    params = dict(entry.get("EXTRA_PARAMS") or {})
    if region:
        params.setdefault("region", region)
    key = _credential(name, entry, "USER", environ)
    if provider == Provider.DUMMY and key is None:
        key = 0  # the original's DummyNodeDriver(0): two running nodes
    return CloudSpec(
        name=name,
        engine=engine,
        provider=provider,
        key=key,
        secret=_credential(name, entry, "PASSWORD", environ),
        params=params,
    )


def parse_farm(farm: dict, environ=os.environ) -> dict[str, CloudSpec]:
    """Resolve every CLOUD_FARM entry, ``default`` first.

    :raises ConfigurationError: an empty farm, or any entry ``parse_cloud`` refuses.
    """
    if not farm:
        raise ConfigurationError("CLOUD_FARM is empty: configure at least one cloud")
    names = sorted(farm, key=lambda name: name != DEFAULT_CLOUD)
    return {name: parse_cloud(name, farm[name], environ) for name in names}


class DriverPool:
    """One libcloud driver per cloud per process, built on first use."""

    def __init__(self, specs: dict[str, CloudSpec], timeout: float):
        self.specs = specs
        self.timeout = timeout
        self._drivers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def spec(self, cloud: str | None) -> CloudSpec:
        """Return the spec of ``cloud`` (``default`` for None).

        :raises UnknownCloudError: the pool has no such cloud.
        """
        name = DEFAULT_CLOUD if cloud is None else cloud
        try:
            return self.specs[name]
        except KeyError:
            raise UnknownCloudError(f"Unknown cloud: {name}") from None

    def get(self, cloud: str | None):
        """Return the driver of ``cloud``, building it the first time.

        :raises UnknownCloudError: the pool has no such cloud.
        :raises CloudError: the driver refuses the configured parameters.
        """
        spec = self.spec(cloud)
        driver = self._drivers.get(spec.name)
        if driver is None:
            with self._lock:
                driver = self._drivers.get(spec.name) or self._build(spec)
                self._drivers[spec.name] = driver
        return driver

    def discard(self, cloud: str | None) -> None:
        """Forget the driver of ``cloud`` so that the next ``get`` builds a new one."""
        self._drivers.pop(self.spec(cloud).name, None)

    def _build(self, spec: CloudSpec):
        driver_class = get_driver(spec.provider)
        args = [spec.key] + ([spec.secret] if spec.secret is not None else [])
        try:
            driver = driver_class(*args, **spec.params)
        except (TypeError, ValueError, LibcloudError) as exc:
            # The driver's own words name the parameter; the arguments, which
            # hold the credentials, are never part of the message.
            raise CloudError(
                f"{spec.name}: the {spec.engine} driver refuses its configuration: {exc}"
            ) from None
        connection = getattr(driver, "connection", None)
        if connection is not None and "timeout" not in spec.params:
            # Set on the connection, not passed to the constructor: some drivers
            # take no `timeout` (Eucalyptus) or break on it (DigitalOcean). The
            # constructor connected without it; connect again, as it did.
            connection.timeout = self.timeout
            connection.connect()
        return driver
