"""For /metrics: the VM-seconds of each pool in each state since the ledger began, and
what they cost, as counters read from the spans at each scrape: Prometheus graphs cost
with ``rate()`` without asking the API."""

from flask import current_app
from prometheus_client.core import CounterMetricFamily
from sqlalchemy import func, literal, select

from .. import clock
from ..bookkeeping.ledger import STATES, seconds_between
from ..extensions import db
from ..models import Span
from .prices import price_of_span


def seconds_by_pool_and_state(app) -> list[tuple[str, str, float, float]]:
    """``(pool, state, seconds, cost)`` of every span until now, summed by the database;
    a VM of no pool under pool "" ."""
    now = literal(clock.now(), Span.started_at.type)
    seconds = seconds_between(Span.started_at, func.coalesce(Span.ended_at, now))
    query = select(
        Span.pool,
        Span.status,
        func.sum(seconds),
        func.sum(seconds * price_of_span(app) / 3600.0),
    ).group_by(Span.pool, Span.status)
    # To the millisecond: SQLite's arithmetic on days leaves a few microseconds of noise.
    return [
        (pool or "", STATES[status], round(float(total or 0), 3), round(float(cost or 0), 6))
        for pool, status, total, cost in db.session.execute(query)
        if status in STATES
    ]


class UsageCollector:
    """The counters dispatcher_vm_seconds_total and dispatcher_vm_cost_total, by pool and
    state."""

    def collect(self):
        seconds = CounterMetricFamily(
            "dispatcher_vm_seconds",
            'VM-seconds spent by the VMs of each pool ("": of no pool) in each state.',
            labels=["pool", "state"],
        )
        cost = CounterMetricFamily(
            "dispatcher_vm_cost",
            "What those VM-seconds cost, by PRICES and the pools' price_per_hour.",
            labels=["pool", "state"],
        )
        for pool, state, total, spent in seconds_by_pool_and_state(current_app):
            seconds.add_metric([pool, state], total)
            cost.add_metric([pool, state], spent)
        yield seconds
        yield cost
