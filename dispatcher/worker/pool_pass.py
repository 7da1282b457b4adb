"""The pool pass: each warm pool tended (``operations.tend_pool``) under its own lock."""

from .. import operations
from ..locks import one_at_a_time
from ..pools import PoolSpec
from ..pools.events import PoolReport

NAME = "pools"


def run(selected: list[PoolSpec]) -> list[PoolReport]:
    """A pass over each of ``selected`` whose lock is free; a report per pool."""
    reports = []
    for spec in selected:
        with one_at_a_time(spec.name) as held:
            skipped = PoolReport(spec.name, skipped=True)
            reports.append(operations.tend_pool(spec) if held else skipped)
    return reports
