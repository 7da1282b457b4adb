"""The cloud pool: CLOUD_FARM entries parsed once into the clouds the dispatcher serves."""

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider

from ..errors import ConfigurationError, InvalidRequestError, UnknownCloudError

if TYPE_CHECKING:
    from .cloud import Cloud

DEFAULT_CLOUD = "default"
# The cloud name of a listing of every cloud at once: no cloud of the farm may take it.
EVERY_CLOUD = "all"

# The original's engine names that libcloud no longer has: its EC2 driver per region.
# There never was an "eu-east" EC2 region; eu-central-1 is the nearest one.
ORIGINAL_ENGINES = {
    "ec2_us_west": (Provider.EC2, "us-west-1"),
    "ec2_us_east": (Provider.EC2, "us-east-1"),
    "ec2_eu_west": (Provider.EC2, "eu-west-1"),
    "ec2_eu_east": (Provider.EC2, "eu-central-1"),
}

# Words in the name of an EXTRA_PARAMS entry that make its value a credential.
SECRET_PARAMETER_WORDS = ("token", "password", "secret", "key")

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
    def credentials(self) -> list[str]:
        """The configured values no answer or log line may show: the key, the secret, and
        EXTRA_PARAMS whose name says token, password, secret or key."""
        values = [self.key, self.secret] + [
            value
            for name, value in self.params.items()
            if any(word in name.lower() for word in SECRET_PARAMETER_WORDS)
        ]
        return [value for value in values if isinstance(value, str) and value]

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
    if EVERY_CLOUD in farm:
        raise ConfigurationError(
            f"CLOUD_FARM: {EVERY_CLOUD!r} is reserved (GET /api/v1/<listing>/{EVERY_CLOUD} "
            "reads every cloud): name the cloud otherwise"
        )
    names = sorted(farm, key=lambda name: name != DEFAULT_CLOUD)
    return {name: parse_cloud(name, farm[name], environ) for name in names}


class CloudPool:
    """The configured clouds by name, ``default`` first; each resolved once per request."""

    def __init__(self, clouds: dict[str, "Cloud"]):
        self._clouds = clouds

    def get(self, name: str | None) -> "Cloud":
        """Return the cloud called ``name`` (``default`` for None).

        :raises UnknownCloudError: the pool has no such cloud.
        :raises InvalidRequestError: ``all``, which names every cloud (listings only).
        """
        name = DEFAULT_CLOUD if name is None else name
        if name == EVERY_CLOUD:
            raise InvalidRequestError(
                f"cloud: {EVERY_CLOUD} names every cloud, for the listings only "
                f"(GET /api/v1/<listing>/{EVERY_CLOUD}): name one cloud here"
            )
        try:
            return self._clouds[name]
        except KeyError:
            raise UnknownCloudError(f"Unknown cloud: {name}") from None

    def __iter__(self) -> Iterator["Cloud"]:
        return iter(self._clouds.values())

    def __len__(self) -> int:
        return len(self._clouds)
