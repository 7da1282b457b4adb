"""A pool's target: how many VMs it keeps free or booting at a moment, and why.

The target is the largest of three parts, never above ``max_total``:

- the floor: the ``min_ready`` of the first schedule entry covering the moment (its cron
  expressions read in the pool's time zone), else the pool's ``min_ready``;
- with ``demand``, the reactive target: the pool's assigns over the last ``window``
  seconds (those refused for an empty pool counted too) as a rate, times the median
  boot of its last VMs, times ``headroom``, rounded up;
- with ``forecast``, the most assigns (and refusals) seen in one lead time (the median
  boot and one pass) starting within ``spread`` seconds of the same time of day, in the
  pool's time zone, on each of up to ``days`` previous days, plus a margin for chance of
  the square root of that count, rounded up (a count of chance arrivals varies by about
  its square root from one day to the next).

To that largest part are added the VMs the requests waiting in line still want of the
pool (``requests``). Everything is read from the ledger, the history and the requests, so
every worker and host computes the same target from the same books; a draining pool's
target is nothing.
"""

import datetime
import math
import statistics
import zoneinfo
from dataclasses import dataclass

from croniter import croniter
from flask import current_app

from .. import clock, history, requests
from ..bookkeeping import ledger
from ..errors import PoolEmptyError
from .spec import PoolSpec, ScheduleEntry

# How many of a pool's latest boots its median boot is taken from.
BOOTS_KEPT = 20
# The outcome the history gives an assign refused for an empty pool: demand all the same.
REFUSED = str(PoolEmptyError.status)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Target:
    """What a pool keeps free or booting (``free``), why (``because``: the part that set
    it), and each part: the floor, the demand's and the forecast's (None: not set), and
    the VMs requests in line still want."""

    free: int
    because: str
    floor: int
    demand: int | None = None
    forecast: int | None = None
    requested: int = 0


def target(spec: PoolSpec, now: datetime.datetime | None = None) -> Target:
    """The target of ``spec`` (an override applied) at ``now`` (the clock's if None)."""
    now = now if now is not None else clock.now()
    if spec.draining:
        return Target(0, "draining: no VM is kept", 0)
    floor, why = floor_of(spec, now)
    parts = [(floor, f"floor: {why}")]
    demand = forecast = None
    if spec.demand is not None or spec.forecast is not None:
        boot = median_boot(spec)
        if spec.demand is not None:
            demand, why = _reactive(spec, now, boot)
            parts.append((demand, f"demand: {why}"))
        if spec.forecast is not None:
            forecast, why = _forecast(spec, now, boot)
            parts.append((forecast, f"forecast: {why}"))
    free, because = max(parts, key=lambda part: part[0])  # the first of equals: the floor
    requested = wanted(requests.in_line(), spec.name)
    if requested:
        free, because = free + requested, f"{because}, + {requested} for requests in line"
    if free > spec.max_total:
        free, because = spec.max_total, f"max_total {spec.max_total}, below {because}"
    return Target(free, because, floor, demand, forecast, requested)


def wanted(line, pool: str) -> int:
    """The VMs of ``pool`` the requests in ``line`` still want: asked, not yet set aside
    for them. The pool makes them beyond the largest part of its target."""
    asking = [row for row in line if pool in row.vms]
    aside = ledger.set_aside_by_request([row.id for row in asking])
    return sum(max(0, row.vms[pool] - aside.get(row.id, {}).get(pool, 0)) for row in asking)


def floor_of(spec: PoolSpec, now: datetime.datetime) -> tuple[int, str]:
    """The pool's floor at ``now``, and where it comes from."""
    local = now.astimezone(zoneinfo.ZoneInfo(spec.timezone))
    for entry in spec.schedule:
        if covers(entry, local):
            return entry.min_ready, f"schedule {entry.describe()} ({spec.timezone})"
    return spec.min_ready, f"min_ready {spec.min_ready}"


def covers(entry: ScheduleEntry, local: datetime.datetime) -> bool:
    """Whether ``entry`` covers the moment ``local`` (in the pool's zone): its ``cron``
    matched since its ``until`` last did. A matching minute counts from its first second:
    an entry of ``0 8 * * *`` covers 08:00:00 and an ``until`` of ``0 19 * * *`` ends it at
    19:00:00. On a day the clocks go forward, a time that does not exist is not matched."""
    after = local + datetime.timedelta(seconds=1)  # the previous match may be this second
    started = croniter(entry.cron, after).get_prev(datetime.datetime)
    ended = croniter(entry.until, after).get_prev(datetime.datetime)
    return started > ended


def median_boot(spec: PoolSpec) -> float:
    """The median seconds from creation to ready of the pool's latest VMs; its
    ``boot_timeout`` while none has been ready yet."""
    boots = ledger.boot_seconds(spec.name, BOOTS_KEPT)
    return statistics.median(boots) if boots else float(spec.boot_timeout)


def _demand_times(spec: PoolSpec, spans) -> list[datetime.datetime]:
    """The pool's assigns and its assigns refused for want of a free VM, within ``spans``."""
    assigned = ledger.assign_times(spec.name, spans)
    refused = history.refusal_times("assign", spec.name, REFUSED, spans)
    return sorted(assigned + refused)


def _reactive(spec: PoolSpec, now: datetime.datetime, boot: float) -> tuple[int, str]:
    window = spec.demand.window
    since = now - datetime.timedelta(seconds=window)
    count = len(_demand_times(spec, [(since, now + datetime.timedelta(microseconds=1))]))
    rate = count / window
    wanted = math.ceil(round(rate * boot * spec.demand.headroom, 9))
    return wanted, f"{rate:.3g} assigns/s × {boot:.0f} s boot × {spec.demand.headroom:g}"


def _forecast(spec: PoolSpec, now: datetime.datetime, boot: float) -> tuple[int, str]:
    """The most demand seen in one lead time near this time of day on previous days,
    and the margin for chance."""
    lead = boot + current_app.config["POOLS_INTERVAL"]
    spread = datetime.timedelta(seconds=spec.forecast.spread)
    reach = datetime.timedelta(seconds=lead)
    zone = zoneinfo.ZoneInfo(spec.timezone)
    wall = now.astimezone(zone).replace(tzinfo=None)
    spans = []
    for days in range(1, spec.forecast.days + 1):
        # The same time of day on the wall clock, across a change of the clocks too.
        then = (wall - days * DAY).replace(tzinfo=zone).astimezone(datetime.UTC)
        spans.append((then - spread, then + spread + reach))
    times = _demand_times(spec, spans)
    most, on = 0, None
    for start, end in spans:
        seen = _most_within([t for t in times if start <= t < end], lead)
        if seen > most:
            most, on = seen, start + spread
    if most == 0:
        return 0, f"no assigns near this time on the last {spec.forecast.days} days"
    margin = math.ceil(math.sqrt(most))
    day = on.astimezone(zone).date().isoformat()
    return most + margin, (
        f"{most} assigns within {lead:.0f} s near this time on {day}, + {margin} for chance"
    )


def _most_within(times: list[datetime.datetime], seconds: float) -> int:
    """The most of the sorted ``times`` that fall within any ``seconds`` of one another."""
    most, first = 0, 0
    for last, moment in enumerate(times):
        while (moment - times[first]).total_seconds() >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most
