"""POOLS, parsed once: which VMs each warm pool keeps ready, and where it makes them."""

import hashlib
import json
import re
import zoneinfo
from dataclasses import dataclass, field

from croniter import croniter

from ..errors import ConfigurationError
from ..fields import tag_key_error

# A pool's name is its vm_type, and goes into the names and tags of the VMs it makes.
POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
RELEASE_POLICIES = ("destroy", "reuse")
POOL_KEYS = {
    "clouds",
    "min_ready",
    "max_total",
    "release",
    "boot_timeout",
    "lease",
    "max_lease",
    "webhook_url",
    "ready_check",
    "recheck_seconds",
    "recheck_failures",
    "max_age",
    "schedule",
    "timezone",
    "demand",
    "forecast",
    "require_tags",
}
SCHEDULE_KEYS = ("cron", "until", "min_ready")
DEMAND_KEYS = {"window", "headroom", "scale_down_delay"}
FORECAST_KEYS = {"days", "spread"}
# How long a pool's free VMs may stay beyond its target before the surplus is retired,
# where its ``demand`` does not say: a quarter of an hour.
SCALE_DOWN_DELAY = 900
READY_CHECK_KEYS = {"tcp", "http", "address", "timeout"}
ADDRESSES = ("public", "private")
# The longest a ready check may wait for a VM, in seconds: a pass waits that long at most.
CHECK_TIMEOUT_MOST = 60
CLOUD_KEYS = {
    "cloud",
    "image",
    "size",
    "location",
    "keyname",
    "security_groups",
    "metadata",
    "price_per_hour",
}
# The most an hour of one VM may be priced at: a figure beyond it is a slip of the pen.
PRICE_MAX = 1_000_000


@dataclass(frozen=True)
class PoolCloud:
    """One cloud of a pool: what a VM is made from there."""

    cloud: str
    image: str
    size: tuple[str, ...]  # tried in order: the next when the cloud refuses one for capacity
    location: str | None = None
    keyname: str | None = None
    security_groups: tuple[str, ...] | None = None
    metadata: dict = field(default_factory=dict)
    # What an hour of a VM of the pool costs here, in place of PRICES for its cloud; None:
    # PRICES says. Not part of the template: a new price makes no VM outdated.
    price_per_hour: float | None = None

    @property
    def template(self) -> str:
        """The fingerprint of what a VM is made from here: each VM records the one it was
        made with, and a VM of another is outdated."""
        made_from = {
            "image": self.image,
            # One size as the text it was before sizes could be lists: the same template.
            "size": self.size[0] if len(self.size) == 1 else list(self.size),
            "location": self.location,
            "keyname": self.keyname,
            "security_groups": self.security_groups,
            "metadata": self.metadata,
        }
        canonical = json.dumps(made_from, sort_keys=True, default=list)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ReadyCheck:
    """How a pool's VM is found ready: a TCP connect to ``port``, or an HTTP GET of ``url``
    (``{address}`` filled in) answered 2xx, at its first ``address`` (public or private;
    the other kind where it has none), within ``timeout`` seconds."""

    port: int | None = None
    url: str | None = None
    address: str = "public"
    timeout: float = 5.0

    def describe(self) -> str:
        return f"TCP port {self.port}" if self.port is not None else f"GET {self.url}"


@dataclass(frozen=True)
class ScheduleEntry:
    """A floor by time of day: ``min_ready`` from each time ``cron`` matches until the next
    time ``until`` does (both cron expressions, read in the pool's time zone)."""

    cron: str
    until: str
    min_ready: int

    def describe(self) -> str:
        return f"{self.cron!r} until {self.until!r}"


@dataclass(frozen=True)
class Demand:
    """A target from the assigns of the last ``window`` seconds: their rate, times the
    pool's median boot, times ``headroom``."""

    window: int = 1800
    headroom: float = 1.5
    scale_down_delay: int = SCALE_DOWN_DELAY


@dataclass(frozen=True)
class Forecast:
    """A target from the same time of day on up to ``days`` previous days: the most
    assigns seen in a VM's lead time within ``spread`` seconds of it."""

    days: int = 7
    spread: int = 600


@dataclass(frozen=True)
class PoolSpec:
    """One warm pool: VMs of one vm_type, made on the first of its clouds that accepts."""

    name: str
    clouds: tuple[PoolCloud, ...]
    min_ready: int
    max_total: int
    release: str = "destroy"
    boot_timeout: int = 600
    lease: int | None = None  # seconds an assignment of its VMs lasts by default
    max_lease: int | None = None  # the longest lease of its VMs
    webhook_url: str | None = None  # where its VMs' lease events go (else LEASE_WEBHOOK_URL)
    ready_check: ReadyCheck | None = None  # None: a VM is free once its cloud runs it
    recheck_seconds: int | None = None  # a free VM is checked again this often (None: never)
    recheck_failures: int = 2  # failed checks in a row that take a free VM out
    max_age: int | None = None  # seconds a VM may stay free (since ready) before renewal
    schedule: tuple[ScheduleEntry, ...] = ()  # the first entry covering a moment wins
    timezone: str = "UTC"  # where the schedule's and the forecast's times of day are read
    demand: Demand | None = None
    forecast: Forecast | None = None
    require_tags: tuple[str, ...] = ()  # tag keys every assign by type and request must carry
    # Set by an admin's override at runtime (``pools.overrides``), never by POOLS:
    paused: bool = False  # no creations
    draining: bool = False  # no creations; free VMs retired; assigned ones ended on release

    @property
    def cloud_names(self) -> list[str]:
        """The names of the pool's clouds, in the order they are tried."""
        return [entry.cloud for entry in self.clouds]

    @property
    def templates(self) -> dict[str, str]:
        """The current template of each of the pool's clouds, by cloud name."""
        return {entry.cloud: entry.template for entry in self.clouds}

    @property
    def scale_down_delay(self) -> int:
        """How long free VMs may stay beyond the target before the surplus is retired."""
        return self.demand.scale_down_delay if self.demand is not None else SCALE_DOWN_DELAY

    def is_current(self, cloud: str, template: str | None) -> bool:
        """Whether a VM of the pool on ``cloud`` made from ``template`` is made as the
        pool now says; one that records no template (made before templates were kept)
        is taken as current."""
        return template is None or self.templates.get(cloud) == template


def _whole(where: str, key: str, value, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ConfigurationError(f"{where}: {key} must be a whole number from {lowest}")
    return value


def _text(where: str, key: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: {key} must be a non-empty text")
    return value


def _sizes(where: str, value) -> tuple[str, ...]:
    """``size``: one size, or a non-empty list of distinct sizes, tried in this order."""
    sizes = (value,) if isinstance(value, str) else value
    if (
        not isinstance(sizes, list | tuple)
        or not sizes
        or not all(isinstance(size, str) and size for size in sizes)
    ):
        raise ConfigurationError(f"{where}: size must be a size or a non-empty list of sizes")
    for index, size in enumerate(sizes):
        if size in sizes[:index]:
            raise ConfigurationError(f"{where}: size names {size!r} twice")
    return tuple(sizes)


def price_number(where: str, key: str, value) -> float:
    """A price of an hour: a number from 0 to PRICE_MAX.

    :raises ConfigurationError: anything else, naming ``where`` and ``key``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= PRICE_MAX:
        raise ConfigurationError(f"{where}: {key} must be a number from 0 to {PRICE_MAX}")
    return float(value)


def _check_keys(where: str, entry, known: set[str], required: tuple[str, ...]) -> None:
    """``entry`` is a mapping with the ``required`` keys and no key outside ``known``."""
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: must be a mapping with {', '.join(required)}")
    extra = sorted(set(entry) - known)
    if extra:
        raise ConfigurationError(
            f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(known))})"
        )
    for key in required:
        if key not in entry:
            raise ConfigurationError(f"{where}: {key} is missing")


def _parse_cloud(where: str, entry, farm) -> PoolCloud:
    _check_keys(where, entry, CLOUD_KEYS, ("cloud", "image", "size"))
    name = _text(where, "cloud", entry["cloud"])
    if name not in farm:
        raise ConfigurationError(f"{where}: cloud {name!r} is not in CLOUD_FARM")
    groups = entry.get("security_groups")
    if groups is not None and (
        not isinstance(groups, list | tuple) or not all(isinstance(g, str) and g for g in groups)
    ):
        raise ConfigurationError(f"{where}: security_groups must be a list of group names")
    metadata = entry.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ConfigurationError(f"{where}: metadata must map texts to texts")
    optional = {key: entry.get(key) for key in ("location", "keyname")}
    for key, value in optional.items():
        if value is not None:
            _text(where, key, value)
    price = entry.get("price_per_hour")
    if price is not None:
        optional["price_per_hour"] = price_number(where, "price_per_hour", price)
    return PoolCloud(
        cloud=name,
        image=_text(where, "image", entry["image"]),
        size=_sizes(where, entry["size"]),
        security_groups=tuple(groups) if groups is not None else None,
        metadata=dict(metadata),
        **optional,
    )


def _parse_ready_check(where: str, entry) -> ReadyCheck:
    where = f"{where}: ready_check"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} must be a mapping with tcp or http")
    extra = sorted(set(entry) - READY_CHECK_KEYS)
    if extra:
        known = ", ".join(sorted(READY_CHECK_KEYS))
        raise ConfigurationError(f"{where}: unknown key {extra[0]!r} (known: {known})")
    if ("tcp" in entry) == ("http" in entry):
        raise ConfigurationError(f"{where} takes one of tcp (a port) and http (a URL)")
    port = url = None
    if "tcp" in entry:
        port = entry["tcp"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigurationError(f"{where}: tcp must be a port from 1 to 65535")
    else:
        url = entry["http"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"{where}: http must be an http:// or https:// URL")
        try:
            url.format(address="192.0.2.1")
        except (KeyError, IndexError, ValueError):
            raise ConfigurationError(
                f"{where}: http may hold {{address}} and no other {{...}}"
            ) from None
    address = entry.get("address", "public")
    if address not in ADDRESSES:
        raise ConfigurationError(f"{where}: address must be one of {', '.join(ADDRESSES)}")
    timeout = entry.get("timeout", 5)
    number = not isinstance(timeout, bool) and isinstance(timeout, int | float)
    if not number or not 0 < timeout <= CHECK_TIMEOUT_MOST:
        raise ConfigurationError(
            f"{where}: timeout must be a number of seconds above 0, at most {CHECK_TIMEOUT_MOST}"
        )
    return ReadyCheck(port=port, url=url, address=address, timeout=float(timeout))


def _cron(where: str, key: str, value) -> str:
    """A cron expression of five fields (minute, hour, day, month, weekday)."""
    if not isinstance(value, str) or len(value.split()) != 5 or not croniter.is_valid(value):
        raise ConfigurationError(
            f"{where}: {key} must be a cron expression of five fields, like '0 8 * * 1-5'"
        )
    return value


def _parse_schedule(where: str, entries, max_total: int) -> tuple[ScheduleEntry, ...]:
    if not isinstance(entries, list | tuple):
        raise ConfigurationError(f"{where}: schedule must be a list of {{cron, until, min_ready}}")
    parsed = []
    for index, entry in enumerate(entries):
        at = f"{where}['schedule'][{index}]"
        _check_keys(at, entry, set(SCHEDULE_KEYS), SCHEDULE_KEYS)
        min_ready = _whole(at, "min_ready", entry["min_ready"], 0)
        if min_ready > max_total:
            raise ConfigurationError(
                f"{at}: min_ready ({min_ready}) is more than max_total ({max_total})"
            )
        cron, until = _cron(at, "cron", entry["cron"]), _cron(at, "until", entry["until"])
        if cron == until:
            raise ConfigurationError(f"{at}: cron and until are the same: it covers no time")
        parsed.append(ScheduleEntry(cron, until, min_ready))
    return tuple(parsed)


def _timezone(where: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: timezone must be a time zone name, like Europe/Rome")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{where}: timezone {value!r} is not a time zone (names like Europe/Rome, UTC)"
        ) from None
    return value


def _number(where: str, key: str, value, above: float, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not above < value <= most:
        raise ConfigurationError(f"{where}: {key} must be a number above {above}, at most {most}")
    return float(value)


def _parse_demand(where: str, entry) -> Demand:
    where = f"{where}: demand"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} must be a mapping of window, headroom, scale_down_delay")
    _check_keys(where, entry, DEMAND_KEYS, ())
    return Demand(
        window=_whole(where, "window", entry.get("window", Demand.window), 60),
        headroom=_number(where, "headroom", entry.get("headroom", Demand.headroom), 0, 100),
        scale_down_delay=_whole(
            where, "scale_down_delay", entry.get("scale_down_delay", SCALE_DOWN_DELAY), 0
        ),
    )


def _parse_forecast(where: str, entry) -> Forecast:
    where = f"{where}: forecast"
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} must be a mapping of days, spread")
    _check_keys(where, entry, FORECAST_KEYS, ())
    days = _whole(where, "days", entry.get("days", Forecast.days), 1)
    spread = _whole(where, "spread", entry.get("spread", Forecast.spread), 0)
    if days > 60:
        raise ConfigurationError(f"{where}: days must be at most 60")
    if spread > 43200:
        raise ConfigurationError(f"{where}: spread must be at most 43200 (12 hours)")
    return Forecast(days=days, spread=spread)


def _require_tags(where: str, value) -> tuple[str, ...]:
    """``require_tags``: a list of distinct tag keys."""
    if not isinstance(value, list | tuple) or not all(isinstance(key, str) for key in value):
        raise ConfigurationError(f"{where}: require_tags must be a list of tag keys")
    for index, key in enumerate(value):
        wrong = tag_key_error(key)
        if wrong is not None:
            raise ConfigurationError(f"{where}: require_tags: {key[:40]!r} must be {wrong}")
        if key in value[:index]:
            raise ConfigurationError(f"{where}: require_tags names {key!r} twice")
    return tuple(value)


def parse_pool(name, entry, farm) -> PoolSpec:
    """One POOLS entry, checked against the clouds of ``farm``.

    :raises ConfigurationError: one line naming the pool and the key at fault.
    """
    if not isinstance(name, str) or not POOL_NAME.match(name):
        raise ConfigurationError(
            f"POOLS: {name!r} is not a pool name (letters, digits, '_', '.', '-'; up to 40)"
        )
    where = f"POOLS[{name!r}]"
    _check_keys(where, entry, POOL_KEYS, ("clouds", "min_ready", "max_total"))
    clouds = entry["clouds"]
    if not isinstance(clouds, list | tuple) or not clouds:
        raise ConfigurationError(f"{where}: clouds must be a non-empty list")
    parsed = tuple(
        _parse_cloud(f"{where}['clouds'][{index}]", item, farm) for index, item in enumerate(clouds)
    )
    seen = [item.cloud for item in parsed]
    if len(set(seen)) != len(seen):
        raise ConfigurationError(f"{where}: clouds names a cloud twice")
    min_ready = _whole(where, "min_ready", entry["min_ready"], 0)
    max_total = _whole(where, "max_total", entry["max_total"], 1)
    if min_ready > max_total:
        raise ConfigurationError(
            f"{where}: min_ready ({min_ready}) is more than max_total ({max_total})"
        )
    release = entry.get("release", "destroy")
    if release not in RELEASE_POLICIES:
        raise ConfigurationError(f"{where}: release must be one of {', '.join(RELEASE_POLICIES)}")
    leases = {
        key: _whole(where, key, entry[key], 1) if entry.get(key) is not None else None
        for key in ("lease", "max_lease")
    }
    webhook_url = entry.get("webhook_url")
    if webhook_url is not None:
        _text(where, "webhook_url", webhook_url)
    ready_check = entry.get("ready_check")
    ready_check = _parse_ready_check(where, ready_check) if ready_check is not None else None
    recheck_seconds = entry.get("recheck_seconds")
    if recheck_seconds is not None:
        recheck_seconds = _whole(where, "recheck_seconds", recheck_seconds, 1)
        if ready_check is None:
            raise ConfigurationError(f"{where}: recheck_seconds needs a ready_check")
    sizing = {}
    if entry.get("schedule") is not None:
        sizing["schedule"] = _parse_schedule(where, entry["schedule"], max_total)
    if entry.get("timezone") is not None:
        sizing["timezone"] = _timezone(where, entry["timezone"])
    if entry.get("demand") is not None:
        sizing["demand"] = _parse_demand(where, entry["demand"])
    if entry.get("forecast") is not None:
        sizing["forecast"] = _parse_forecast(where, entry["forecast"])
    require_tags = _require_tags(where, entry.get("require_tags", ()))
    return PoolSpec(
        name=name,
        clouds=parsed,
        min_ready=min_ready,
        max_total=max_total,
        release=release,
        boot_timeout=_whole(where, "boot_timeout", entry.get("boot_timeout", 600), 1),
        webhook_url=webhook_url,
        ready_check=ready_check,
        recheck_seconds=recheck_seconds,
        recheck_failures=_whole(where, "recheck_failures", entry.get("recheck_failures", 2), 1),
        max_age=_whole(where, "max_age", entry["max_age"], 60) if "max_age" in entry else None,
        require_tags=require_tags,
        **leases,
        **sizing,
    )


def parse_pools(pools, farm, backend: str, keeps_pools: bool) -> dict[str, PoolSpec]:
    """Every POOLS entry, by name, beside the bookkeeping ``backend`` (whether it
    ``keeps_pools``).

    :raises ConfigurationError: one line naming the pool and the key at fault; pools with
        a bookkeeping other than the local ledger.
    """
    if not pools:
        return {}
    if not isinstance(pools, dict):
        raise ConfigurationError("POOLS must be a mapping of pool names to pools")
    if not keeps_pools:
        raise ConfigurationError(
            f"POOLS needs the local ledger (ASSIGNMENT_BACKEND='local'), not {backend!r}: "
            "the pool manager keeps its VMs there"
        )
    return {name: parse_pool(name, entry, farm) for name, entry in pools.items()}
