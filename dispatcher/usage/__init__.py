"""Usage and cost: what the VMs cost and who used them, read from the ledger's spans
(``models.Span``: each period a VM spent in one state for one holder), priced by PRICES
and the pools' ``price_per_hour``. A report cuts every span at its period's bounds and is
summed by the database, however many spans the period has.
"""

from .prices import EXTENSION, hourly_price, init_app
from .report import GROUPS, GROUPS_SAID, groups_from, period, report, usage_to_csv

__all__ = [
    "EXTENSION",
    "GROUPS",
    "GROUPS_SAID",
    "groups_from",
    "hourly_price",
    "init_app",
    "period",
    "report",
    "usage_to_csv",
]
