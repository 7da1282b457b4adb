"""What an hour of a VM costs: PRICES (per cloud, by size, ``"*"`` for any other size)
and a pool's ``price_per_hour`` on one of its clouds, which comes first for the pool's
VMs there. Checked at start-up; a VM nothing prices costs nothing in a report.
"""

from sqlalchemy import case, literal

from .. import bookkeeping, pools
from ..errors import ConfigurationError
from ..models import Span
from ..pools.spec import price_number

EXTENSION = "dispatcher.prices"
ANY_SIZE = "*"


def check(app) -> None:
    """Check PRICES against CLOUD_FARM, and keep it with the pools' prices.

    :raises ConfigurationError: one line naming the entry at fault.
    """
    found = app.config.get("PRICES") or {}
    if not isinstance(found, dict):
        raise ConfigurationError("PRICES must map cloud names to {size: price per hour}")
    if found and not bookkeeping.BACKENDS[app.config["ASSIGNMENT_BACKEND"]].keeps_spans:
        raise ConfigurationError(
            "PRICES price the local ledger's spans: beside Cistern"
            " (ASSIGNMENT_BACKEND=cistern) there are none"
        )
    farm = app.config.get("CLOUD_FARM") or {}
    checked: dict[str, dict[str, float]] = {}
    for cloud, sizes in found.items():
        if cloud not in farm:
            raise ConfigurationError(f"PRICES: cloud {cloud!r} is not in CLOUD_FARM")
        if not isinstance(sizes, dict) or not sizes:
            raise ConfigurationError(
                f"PRICES[{cloud!r}] must map sizes (or {ANY_SIZE!r}) to a price per hour"
            )
        for size in sizes:
            if not isinstance(size, str) or not size:
                raise ConfigurationError(f"PRICES[{cloud!r}]: a size must be a non-empty text")
        checked[cloud] = {
            size: price_number(f"PRICES[{cloud!r}]", repr(size), price)
            for size, price in sizes.items()
        }
    app.extensions[EXTENSION] = checked


def _table(app) -> tuple[dict, list]:
    """PRICES as checked, and ``[(pool, cloud, price)]`` of the pools' own prices."""
    per_pool = [
        (spec.name, entry.cloud, entry.price_per_hour)
        for spec in app.extensions[pools.EXTENSION].values()
        for entry in spec.clouds
        if entry.price_per_hour is not None
    ]
    return app.extensions[EXTENSION], per_pool


def price_of_span(app):
    """What an hour of a span's VM costs, as a SQL expression (the database prices each
    span): its pool's own price on its cloud, else PRICES for its cloud and size, else
    for its cloud's ``"*"``, else 0."""
    prices, per_pool = _table(app)
    whens = [
        ((Span.pool == pool) & (Span.cloud == cloud), price) for pool, cloud, price in per_pool
    ]
    for cloud, sizes in prices.items():
        whens += [
            ((Span.cloud == cloud) & (Span.size == size), price)
            for size, price in sizes.items()
            if size != ANY_SIZE
        ]
    whens += [
        (Span.cloud == cloud, sizes[ANY_SIZE])
        for cloud, sizes in prices.items()
        if ANY_SIZE in sizes
    ]
    return case(*whens, else_=literal(0.0)) if whens else literal(0.0)
