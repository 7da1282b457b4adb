"""The usage report of a period: per group (user, pool, cloud, vm_type or a tag's value,
or several), the VM-seconds assigned, idle in pools (booting, free or set aside for a
request) and faulty, what they cost, the assigns and releases, the wait of queued
requests from asking to ready, and the most VMs held at once.

Every span is cut at the period's bounds, and one still open counts until now: the
seconds and the cost are summed by the database, in one statement over the spans the
period touches; the peaks, of each group and of all, in one more (a running count over
the starts and ends). docs/performance.md, "(g) The usage report of a month", measures
them.
"""

import csv
import datetime
import io
import math

from flask import current_app
from sqlalchemy import Float, case, func, literal, or_, select, tuple_, union_all
from sqlalchemy.dialects.postgresql import aggregate_order_by

from .. import bookkeeping, clock
from ..bookkeeping.ledger import seconds_within
from ..errors import InvalidRequestError
from ..extensions import db
from ..fields import tag_key_error
from ..models import ASSIGNED, BOOTING, FAULTY, FREE, RESERVED, Span, VMRequest
from ..serializers import as_utc, utc_iso
from ..shapes import ARRAY, INTEGER, NUMBER, OBJECT, TEXT, describes
from .prices import price_of_span

GROUPS = ("user", "pool", "cloud", "vm_type")
TAG = "tag:"
GROUPS_MOST = 4  # the most group names one report combines
GROUPS_SAID = f"{', '.join(GROUPS)} or {TAG}<key>, comma-separated, at most {GROUPS_MOST}"
IDLE = (BOOTING, FREE, RESERVED)
# The figures of a group, in the order a table shows them.
FIGURES = (
    "assigned_seconds",
    "idle_seconds",
    "faulty_seconds",
    "assigned_cost",
    "idle_cost",
    "faulty_cost",
    "cost",
    "assigns",
    "releases",
    "wait_p50",
    "wait_p95",
    "requests_ready",
    "peak_held",
)


def period(start: datetime.datetime | None, end: datetime.datetime | None) -> tuple:
    """A report's period as asked: ``end`` now by default, ``start`` the beginning of the
    month of ``end`` (UTC).

    :raises InvalidRequestError: the start is not before the end.
    """
    end = end or clock.now()
    start = start or end.astimezone(datetime.UTC).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    if start >= end:
        raise InvalidRequestError("from: must come before to")
    return start, end


def groups_from(text: str) -> list[str]:
    """The group names of ``text``: at most GROUPS_MOST distinct names of GROUPS or
    ``tag:<key>``, comma-separated.

    :raises InvalidRequestError: naming the one at fault (cut to 40 characters).
    """
    found = text.split(",")
    if len(found) > GROUPS_MOST:
        raise InvalidRequestError(f"group_by: at most {GROUPS_MOST} of {GROUPS_SAID}")
    for index, name in enumerate(found):
        shown = name[:40]
        if name.startswith(TAG):
            wrong = tag_key_error(name[len(TAG) :])
            if wrong is not None:
                raise InvalidRequestError(f"group_by: the key of {shown!r} must be {wrong}")
        elif name not in GROUPS:
            raise InvalidRequestError(f"group_by: {shown!r} is not one of {GROUPS_SAID}")
        if name in found[:index]:
            raise InvalidRequestError(f"group_by: {shown!r} is named twice")
    return found


def _key(name: str):
    """The spans' column (or a tag's value) a group is named by."""
    if name.startswith(TAG):
        return Span.tags[name[len(TAG) :]].as_string()
    return {"user": Span.user, "pool": Span.pool, "cloud": Span.cloud, "vm_type": Span.vm_type}[
        name
    ]


def _request_keys(name: str, request: VMRequest) -> list:
    """The values of group ``name`` a queued request counts under: each of its pools for
    pool and vm_type (a pool's vm_type is its name)."""
    if name.startswith(TAG):
        return [(request.tags or {}).get(name[len(TAG) :])]
    if name in ("pool", "vm_type"):
        return sorted(request.vms)
    return [request.user if name == "user" else request.cloud]


def _percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile: the smallest value at least ``fraction`` of the values
    are at or below."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _cut(start, end, now):
    """The expressions of a span cut at [start, end): its seconds within, and the filter
    of the spans that overlap it. An open span ends now (never past ``end``)."""
    moment = Span.started_at.type
    start_, end_ = literal(start, moment), literal(end, moment)
    until = literal(min(end, now), moment)
    begins = case((Span.started_at > start_, Span.started_at), else_=start_)
    ends = case((Span.ended_at.is_(None), until), (Span.ended_at < end_, Span.ended_at), else_=end_)
    seconds = seconds_within(begins, ends)
    overlaps = (Span.started_at < end_) & or_(Span.ended_at.is_(None), Span.ended_at > start_)
    return begins, ends, seconds, overlaps


def _figures(keys, start, end, now, holder) -> dict[tuple, dict]:
    """The seconds, costs, assigns and releases of each group: one statement."""
    _, _, seconds, overlaps = _cut(start, end, now)
    price = price_of_span(current_app)
    where = [overlaps]
    if holder is not None:
        where += [Span.status == ASSIGNED, Span.holder == holder]
    inner = select(
        *(key.label(f"k{index}") for index, key in enumerate(keys)),
        Span.status.label("status"),
        seconds.label("seconds"),
        price.label("price"),
        Span.started_at.label("started_at"),
        Span.ended_at.label("ended_at"),
    ).where(*where)
    cut = inner.subquery("cut")
    moment = Span.started_at.type
    start_, end_ = literal(start, moment), literal(end, moment)
    c = cut.c

    def summed(state, cost=False):
        amount = c.seconds * c.price / 3600.0 if cost else c.seconds
        return func.coalesce(func.sum(amount).filter(state), 0.0).cast(Float)

    a_, i_, f_ = c.status == ASSIGNED, c.status.in_(IDLE), c.status == FAULTY
    group = [c[f"k{index}"] for index in range(len(keys))]
    query = select(
        *group,
        summed(a_),
        summed(i_),
        summed(f_),
        summed(a_, True),
        summed(i_, True),
        summed(f_, True),
        func.count().filter(a_ & (c.started_at >= start_)),
        func.count().filter(a_ & c.ended_at.is_not(None) & (c.ended_at < end_)),
    ).group_by(*group)
    found = {}
    for row in db.session.execute(query):
        values = tuple(row[: len(keys)])
        a, i, f, a_cost, i_cost, f_cost, assigns, releases = row[len(keys) :]
        found[values] = {
            "assigned_seconds": a,
            "idle_seconds": i,
            "faulty_seconds": f,
            "assigned_cost": a_cost,
            "idle_cost": i_cost,
            "faulty_cost": f_cost,
            "assigns": assigns,
            "releases": releases,
        }
    return found


def _peaks(keys, start, end, now, holder) -> tuple[dict[tuple, int], int]:
    """The most VMs held at once in each group within the period, and in all of them (no
    sum of the groups' peaks, which come at different moments): a running count over the
    assigned spans' starts (+1) and ends (-1), an end before a start at one moment. One
    statement for both."""
    begins, ends, _, overlaps = _cut(start, end, now)
    moment = Span.started_at.type
    end_ = literal(end, moment)
    where = [overlaps, Span.status == ASSIGNED]
    if holder is not None:
        where.append(Span.holder == holder)
    # A span's end is a step only within the period; one cut at its end, or open, has none.
    ends_within = Span.ended_at.is_not(None) & (Span.ended_at < end_)
    if db.engine.dialect.name == "postgresql":
        return _peaks_by_search(keys, begins, case((ends_within, Span.ended_at)), where)
    return _peaks_by_sweep(keys, begins, ends, ends_within, where)


def _peaks_by_sweep(keys, begins, ends, ends_within, where) -> tuple[dict[tuple, int], int]:
    """The peaks by SQL's window functions: every step sorted by group and time, and
    again by time; each group's row carries the most held in all at its own steps, whose
    maximum is the total's."""
    labelled = [key.label(f"k{index}") for index, key in enumerate(keys)]
    starts = select(*labelled, begins.label("at"), literal(1).label("step")).where(*where)
    stops = select(*labelled, ends.label("at"), literal(-1).label("step"))
    steps = union_all(starts, stops.where(*where, ends_within)).subquery("steps")
    group = [steps.c[column.name] for column in labelled]
    order = [steps.c.at, steps.c.step]
    running = func.sum(steps.c.step).over(
        partition_by=group or None, order_by=order, rows=(None, 0)
    )
    running_all = func.sum(steps.c.step).over(order_by=order, rows=(None, 0))
    counted = select(*group, running.label("held"), running_all.label("held_all"))
    counted = counted.subquery("counted")
    outer = [counted.c[column.name] for column in labelled]
    query = select(*outer, func.max(counted.c.held), func.max(counted.c.held_all))
    peaks, total = {}, 0
    # No assigned span at all: without groups, one row whose maxima are NULL.
    for *values, peak, held_all in db.session.execute(query.group_by(*outer)):
        peaks[tuple(values)] = int(peak or 0)
        total = max(total, int(held_all or 0))
    return peaks, total


def _peaks_by_search(keys, begins, stop, where) -> tuple[dict[tuple, int], int]:
    """The peaks on PostgreSQL, with less sorting than the sweep's two sorts of every
    step: the spans sorted by group once, then each group's starts and ends in order, as
    two arrays (small sorts), and for all the groups too (a grouping set of its own). At
    each start the VMs held are the starts so far less the ends up to that moment (an end
    before a start at one moment), which a binary search in the ends counts
    (``width_bucket``). The count only rises at a start: the most at a start is the
    peak."""
    # The groups sorted by their bytes: their order is of no matter here, and a locale's
    # collation compares text several times slower.
    labelled = [key.collate("C").label(f"k{index}") for index, key in enumerate(keys)]
    assigned = select(*labelled, begins.label("at"), stop.label("stop")).where(*where)
    assigned = assigned.subquery("assigned")
    group = [assigned.c[column.name] for column in labelled]
    at, stop = assigned.c.at, assigned.c.stop
    grouped = select(
        *group,
        (func.grouping(*group) != 0 if group else literal(True)).label("whole"),
        func.array_agg(aggregate_order_by(at, at)).label("starts"),
        func.array_agg(aggregate_order_by(stop, stop)).filter(stop.is_not(None)).label("stops"),
    )
    if group:
        grouped = grouped.group_by(func.grouping_sets(tuple_(*group), tuple_()))
    grouped = grouped.subquery("grouped")
    # Each start with the count of the starts up to it, itself included.
    started = func.unnest(grouped.c.starts).table_valued("at", with_ordinality="count")
    started = started.render_derived(name="started")
    ended = func.coalesce(func.width_bucket(started.c.at, grouped.c.stops), 0)
    # The maximum taken in the subquery, per group: the starts never leave it as rows
    # carrying the ends' array, which a sort of them would copy once for each.
    peak = select(func.max(started.c.count - ended)).select_from(started).scalar_subquery()
    query = select(*(grouped.c[column.name] for column in labelled), grouped.c.whole, peak)
    peaks, total = {}, 0
    # No assigned span at all: the total's row only, whose maximum is NULL.
    for *values, whole, peak in db.session.execute(query):
        if whole:
            total = int(peak or 0)
        if not whole or not labelled:
            peaks[tuple(values)] = int(peak or 0)
    return peaks, total


def _waits(names, start, end, holder) -> tuple[dict[tuple, list[float]], list[float]]:
    """The seconds each queued request ready within the period waited, by group, and all
    of them (each request once)."""
    query = select(
        VMRequest.created_at,
        VMRequest.ready_at,
        VMRequest.user,
        VMRequest.cloud,
        VMRequest.vms,
        VMRequest.tags,
    ).where(VMRequest.ready_at.is_not(None), VMRequest.ready_at >= start, VMRequest.ready_at < end)
    if holder is not None:
        query = query.where(VMRequest.caller == holder)
    found: dict[tuple, list[float]] = {}
    every = []
    for request in db.session.execute(query):
        waited = max(0.0, (as_utc(request.ready_at) - as_utc(request.created_at)).total_seconds())
        every.append(waited)
        combinations = [()]
        for name in names:
            combinations = [
                (*done, value) for done in combinations for value in _request_keys(name, request)
            ]
        for values in combinations:
            found.setdefault(values, []).append(waited)
    return found, every


def _finished(figures: dict, waited: list[float], peak: int) -> dict:
    cost = figures["assigned_cost"] + figures["idle_cost"] + figures["faulty_cost"]
    done = {**figures, "cost": round(cost, 2)}
    for name in ("assigned_cost", "idle_cost", "faulty_cost"):
        done[name] = round(figures[name], 2)
    for name in ("assigned_seconds", "idle_seconds", "faulty_seconds"):
        done[name] = round(figures[name])
    p50, p95 = _percentile(waited, 0.5), _percentile(waited, 0.95)
    done["wait_p50"] = round(p50, 3) if p50 is not None else None
    done["wait_p95"] = round(p95, 3) if p95 is not None else None
    done["requests_ready"] = len(waited)
    done["peak_held"] = peak
    return {name: done[name] for name in FIGURES}


# What the database sums for a group, before rounding: the figures up to the releases
# but the total cost, which is their sum.
EMPTY = dict.fromkeys((name for name in FIGURES[: FIGURES.index("wait_p50")] if name != "cost"), 0)


FIGURES_SHAPE = {
    "type": "object",
    "description": "seconds and counts whole; costs to the cent; waits in seconds, null"
    " without a request ready in the period",
    "properties": {
        name: {"type": ["number", "null"]}
        if name.startswith("wait")
        else (NUMBER if name.endswith("cost") else INTEGER)
        for name in FIGURES
    },
    "required": list(FIGURES),
}


@describes(
    "Usage",
    {
        "from": TEXT,
        "to": TEXT,
        "group_by": ARRAY,
        "groups": {"type": "array", "items": OBJECT},
        "total": FIGURES_SHAPE,
    },
)
def report(
    start: datetime.datetime,
    end: datetime.datetime,
    group_by: list[str],
    holder: str | None = None,
) -> dict:
    """The usage of [``start``, ``end``) by ``group_by`` (names of GROUPS, or ``tag:key``),
    and its total; ``holder``: only what that caller assigned (an agent's own users), no
    idle or faulty time.

    :raises InvalidRequestError: beside Cistern, which keeps no spans.
    """
    if not bookkeeping.backend().keeps_spans:
        raise InvalidRequestError(
            "usage reports read the local ledger's spans: beside Cistern"
            " (ASSIGNMENT_BACKEND=cistern) there are none"
        )
    now = clock.now()
    keys = [_key(name) for name in group_by]
    figures = _figures(keys, start, end, now, holder)
    peaks, total_peak = _peaks(keys, start, end, now, holder)
    waits, every_wait = _waits(group_by, start, end, holder)
    groups = []
    for values in sorted(set(figures) | set(waits) | set(peaks), key=_order):
        found = figures.get(values, EMPTY)
        waited, peak = waits.get(values, []), peaks.get(values, 0)
        if not (waited or peak or any(found.values())):
            continue  # only spans of no length (a VM recorded and taken at once)
        row = dict(zip(group_by, values, strict=True))
        groups.append({**row, **_finished(found, waited, peak)})
    summed = {name: sum(figures[values][name] for values in figures) for name in EMPTY}
    return {
        "from": utc_iso(start),
        "to": utc_iso(end),
        "group_by": list(group_by),
        "groups": groups,
        "total": _finished(summed, every_wait, total_peak),
    }


def _order(values: tuple) -> tuple:
    """Groups in order of their names, the unnamed (None) last."""
    return tuple((value is None, str(value) if value is not None else "") for value in values)


def usage_to_csv(found: dict) -> str:
    """The report as CSV: one row per group, its names then its figures, and a total row
    ("total" in the first column), as a spreadsheet opens it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    names = found["group_by"]
    writer.writerow([*names, *FIGURES])
    for group in found["groups"]:
        writer.writerow([_cell(group[name]) for name in names] + [_cell(group[f]) for f in FIGURES])
    first = ["total"] + [""] * (len(names) - 1) if names else []
    writer.writerow(first + [_cell(found["total"][f]) for f in FIGURES])
    return out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    text = str(value)
    # A value a spreadsheet would take for a formula is quoted as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(value) else text


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
