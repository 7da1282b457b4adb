"""Usage and cost: what the VMs cost and who used them, read from the ledger's spans
(``models.Span``: each period a VM spent in one state for one holder), priced by PRICES
and the pools' ``price_per_hour``. A report cuts every span at its period's bounds and is
summed by the database, however many spans the period has.
"""

from .. import bookkeeping, metrics
from .counters import UsageCollector
from .prices import EXTENSION, check
from .report import GROUPS, GROUPS_SAID, groups_from, period, report, usage_to_csv

__all__ = [
    "EXTENSION",
    "GROUPS",
    "GROUPS_SAID",
    "groups_from",
    "init_app",
    "period",
    "report",
    "usage_to_csv",
]


def init_app(app) -> None:
    """Check PRICES and the pools' prices; beside the local ledger, with pools or prices,
    count the VM-seconds on /metrics.

    :raises ConfigurationError: one line naming the price at fault.
    """
    check(app)
    config = app.config
    # Neither pools nor prices: /metrics asks nothing of the database.
    wanted = config.get("POOLS") or config.get("PRICES")
    if wanted and bookkeeping.BACKENDS[config["ASSIGNMENT_BACKEND"]].keeps_spans:
        metrics.register_collector(app, UsageCollector())
