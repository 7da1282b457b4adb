"""A day's trace of assigns and releases replayed against warm pools on a simulated clock,
to compare pool sizing policies: ``python -m bench.pools_replay TRACE [options]``.

The real code runs, on a clock of its own (``dispatcher.clock.running_on``): the worker's
pool pass (``worker.pool_pass.run``), the assign by type (``operations.assign_from_pool``)
and the release (``operations.release_vm``), on an SQLite database in memory, against a
simulated cloud (bench/simulated_cloud.py) whose VMs run ``--boot-seconds`` after their
create call. docs/performance.md ("Replaying a day against the pools") tells the trace's
format, the policies, the figures and how the waits are counted.
"""

import argparse
import bisect
import contextlib
import csv
import dataclasses
import datetime
import json
import math
import random
import sys
import time
import zoneinfo
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from croniter import croniter

from bench import common, simulated_cloud
from dispatcher import clock, clouds, operations, pools
from dispatcher.bookkeeping import ledger
from dispatcher.errors import ConfigurationError, PoolEmptyError
from dispatcher.pools import passes, sizing
from dispatcher.pools.spec import POOL_NAME
from dispatcher.worker import pool_pass

DAY = 86400
# Day 1 of the replay: a Monday, midnight in the pools' time zone (UTC).
START = datetime.datetime(2026, 3, 2, tzinfo=datetime.UTC)
CLOUD = "sim"
CALLER = "replay"  # the agent that asks for and gives back the VMs of every user
DATABASE_URL = "sqlite://"  # in memory: the pass's lock file goes to the instance folder
HEADER = ("time_s", "event", "user", "vm_type")
EVENTS = ("assign", "release")
POLICIES = ("static", "schedule", "demand", "forecast")
MAX_TOTAL = 1000
DEMAND = {"window": 1800, "headroom": 1.5, "scale_down_delay": 900}
FORECAST = {"days": 7, "spread": 600}
# A share of the users left out of each varied day, and as many played twice.
VARIED_SHARE = 0.1
# How long after its last day a replay goes on to serve the assigns still waiting.
DRAIN_SECONDS = DAY
# How far before and after a time the target may change at it is computed again.
EPSILON = 0.01


class TraceError(Exception):
    """A trace the replay cannot read; the message names the file and the line."""


class PolicyError(Exception):
    """A policy whose pools the dispatcher's POOLS parsing refuses."""


@dataclass(frozen=True)
class Event:
    """One line of a trace: at ``time`` seconds (since the day's start, or since the
    replay's once played), ``user`` asks for (assign) or gives back (release) a VM."""

    time: float
    kind: str
    user: str
    vm_type: str
    order: int = 0  # the event's rank in the trace, for events at the same second


# -- the trace ---------------------------------------------------------------------------


def read_trace(path: Path) -> list[Event]:
    """The events of the trace at ``path``, in the order of their times.

    :raises TraceError: no header, an unknown event, a time not in the day, a user or
        vm_type that is missing or no pool name; the message names the line.
    """
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot be read: {exc}") from None
    where = f"{path}:1"
    if not rows or tuple(cell.strip() for cell in rows[0]) != HEADER:
        raise TraceError(f"{where}: the header must be {','.join(HEADER)}")
    events = []
    for number, row in enumerate(rows[1:], start=2):
        where = f"{path}:{number}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(HEADER):
            raise TraceError(f"{where}: {len(row)} fields, not {len(HEADER)} ({','.join(HEADER)})")
        seconds, kind, user, vm_type = (cell.strip() for cell in row)
        try:
            moment = float(seconds)
        except ValueError:
            moment = math.nan
        if not 0 <= moment < DAY:
            raise TraceError(f"{where}: time_s must be a number of seconds from 0 to under {DAY}")
        if kind not in EVENTS:
            raise TraceError(f"{where}: event must be assign or release, not {kind[:40]!r}")
        if not user:
            raise TraceError(f"{where}: user is empty")
        if not POOL_NAME.match(vm_type):
            raise TraceError(
                f"{where}: vm_type must be a pool name (letters, digits, '_', '.', '-'; up to 40)"
            )
        events.append(Event(moment, kind, user, vm_type))
    if not any(event.kind == "assign" for event in events):
        raise TraceError(f"{path}: no assign")
    # Sorted by time, the trace's order kept among events of the same second.
    ordered = sorted(enumerate(events), key=lambda item: (item[1].time, item[0]))
    return [dataclasses.replace(event, order=rank) for rank, (_, event) in enumerate(ordered)]


def played_day(trace: list[Event], day: int, jitter: float, seed: int) -> list[Event]:
    """The events of day ``day`` (0 for the first) of the replay, at their times since
    the replay's start. The first day plays the trace as it is; each later day leaves
    out a tenth of the users and plays another tenth twice (the copy as ``user~2``), and
    moves each user's events together by a normal draw of standard deviation ``jitter``
    seconds, kept within the day; seeded by ``seed`` and the day, so that the same seed
    plays the same days."""
    offset = day * DAY
    if day == 0:
        return [dataclasses.replace(event, time=offset + event.time) for event in trace]
    draws = random.Random(f"{seed}:day:{day}")
    users = sorted({event.user for event in trace})
    shuffled = users[:]
    draws.shuffle(shuffled)
    varied = int(len(users) * VARIED_SHARE + 0.5)
    left_out, doubled = set(shuffled[:varied]), set(shuffled[varied : 2 * varied])
    played = []
    for user in users:
        if user in left_out:
            continue
        for name in (user, f"{user}~2") if user in doubled else (user,):
            shift = draws.gauss(0, jitter) if jitter > 0 else 0.0
            for event in trace:
                if event.user == user:
                    moment = min(max(event.time + shift, 0.0), DAY - 1.0)
                    played.append(dataclasses.replace(event, time=offset + moment, user=name))
    return sorted(played, key=lambda event: (event.time, event.order, event.user))


# -- the pools ---------------------------------------------------------------------------


def office_hours(trace: list[Event]) -> tuple[int, int]:
    """The hour of the trace's first assign, and the hour after its last (0 for midnight)."""
    assigns = [event.time for event in trace if event.kind == "assign"]
    return int(min(assigns) // 3600), (int(max(assigns) // 3600) + 1) % 24


def pool_entry(policy: str, min_ready: int, hours: tuple[int, int]) -> dict:
    """The POOLS entry of a pool under ``policy``: the simulated cloud, ``release:
    destroy``, and the policy's sizing."""
    entry = {
        "clouds": [{"cloud": CLOUD, "image": simulated_cloud.IMAGE, "size": simulated_cloud.SIZE}],
        "min_ready": min_ready,
        "max_total": MAX_TOTAL,
        "release": "destroy",
    }
    entry["timezone"] = "UTC"
    if policy == "static":
        return entry
    if policy == "schedule":
        # The floor an operator who knows the office hours would set; assigns in every
        # hour of the day leave no hours out of office, and the floor holds all day.
        first, after_last = hours
        if first != after_last:
            entry["min_ready"] = 0
            entry["schedule"] = [
                {
                    "cron": f"0 {first} * * *",
                    "until": f"0 {after_last} * * *",
                    "min_ready": min_ready,
                }
            ]
    else:
        entry["demand"] = dict(DEMAND)
        if policy == "forecast":
            entry["forecast"] = dict(FORECAST)
    return entry


def pools_setting(policy: str, sizes: dict[str, int], hours: tuple[int, int]) -> dict:
    """POOLS: one pool per vm_type, each with its own ``min_ready`` (``sizes``)."""
    return {name: pool_entry(policy, sizes[name], hours) for name in sorted(sizes)}


# -- the replay --------------------------------------------------------------------------


@dataclass
class Waiter:
    """An assign that found no free VM, in its pool's line."""

    user: str
    asked_at: float
    measured: bool
    release_after: bool = False  # its user gave the VM back before getting it


@dataclass
class PoolState:
    """What the replay knows of one pool between its calls to the dispatcher."""

    spec: object
    line: deque = field(default_factory=deque)
    holdings: dict = field(default_factory=dict)  # user -> deque of node ids, oldest first
    last_pass: float = -math.inf
    touched: bool = False  # an event since the last pass
    free: int = 0
    booting: int = 0
    idle_since: float = 0.0
    # The pool's target as last computed, and until when it holds: till the ledger, the
    # history or the line change (``stale``), or the clock reaches ``target_until``.
    target: int = 0
    stale: bool = True
    target_until: float = -math.inf
    demand: list = field(default_factory=list)  # when assigns were made or refused
    lead: float = 0.0  # the forecast's lead time: the pool's median boot and one pass
    surplus_since: float | None = None  # as the pool's last pass recorded it
    # The figures, over the measured days.
    assigns: int = 0
    warm: int = 0
    waits: list = field(default_factory=list)
    idle_seconds: float = 0.0
    passes: int = 0
    unmatched_releases: int = 0


@dataclass(frozen=True)
class Options:
    """How a replay runs: the policy, its pools' ``min_ready``, the days and the draws."""

    policy: str = "static"
    min_ready: int = 1
    days: int = 1
    jitter: float = 300.0
    boot_mean: float = 90.0
    boot_jitter: float = 30.0
    seed: int = 1
    line: str = "asks"  # "asks": each waiting assign asks its pool for a VM; "waits": not
    sizes: dict | None = None  # min_ready by pool, instead of ``min_ready`` for all
    # From when to when (seconds of simulated time) the target is computed at every tick
    # and a pass runs at every tick off it, none skipped: what the skips are checked
    # against (``--every-tick``, tests/test_pools_replay.py).
    every_tick: tuple[float, float] | None = None


class Replay:
    """One replay of ``days`` days of ``trace`` under one policy, in a fresh dispatcher."""

    def __init__(self, trace: list[Event], options: Options):
        self.trace = trace
        self.options = options
        self.seconds = 0.0  # the simulated clock, in seconds since START
        self.measured_from = DAY if options.days > 1 else 0
        self.measured_to = options.days * DAY
        self.end = self.measured_to + DRAIN_SECONDS  # the latest a line is served
        self.interval = 15.0  # POOLS_INTERVAL, read from the app
        self.world = self.cloud = None
        self.states: dict[str, PoolState] = {}  # by pool name, kept after the run

    def now(self) -> datetime.datetime:
        return START + datetime.timedelta(seconds=self.seconds)

    def run(self) -> dict:
        """Play the days; the figures, by pool and in total.

        :raises PolicyError: POOLS parsing refuses the policy's pools.
        """
        options = self.options
        names = sorted({event.vm_type for event in self.trace})
        sizes = options.sizes or dict.fromkeys(names, options.min_ready)
        setting = pools_setting(options.policy, sizes, office_hours(self.trace))
        events = []
        for day in range(options.days):
            events += played_day(self.trace, day, options.jitter, options.seed)
        simulated_cloud.register()
        started = time.perf_counter()
        with (
            common.scratch_folder("pools-replay-") as folder,
            simulated_cloud.World(
                lambda: self.seconds, options.boot_mean, options.boot_jitter, options.seed
            ) as world,
            clock.running_on(self.now),
        ):
            try:
                app = common.make_app(
                    DATABASE_URL,
                    CLOUD_FARM={CLOUD: {"ENGINE": simulated_cloud.ENGINE, "USER": world.key}},
                    POOLS=setting,
                    # One creation at a time: the boot times are drawn in a seeded order.
                    POOLS_CREATE_CONCURRENCY=1,
                    QUOTAS=None,
                )
            except ConfigurationError as exc:
                raise PolicyError(f"policy {options.policy}: {exc}") from None
            app.instance_path = str(folder)  # the pass's lock file here, not in the checkout
            with app.app_context():
                self.interval = float(app.config["POOLS_INTERVAL"])
                self._play(world, events)
                figures = self._figures(world)
            common.dispose(app)
        seconds = time.perf_counter() - started
        figures["seconds"] = {"total": seconds, "per_day": seconds / options.days}
        return figures

    # -- the loop --

    def _play(self, world, events: list[Event]) -> None:
        self.world, self.cloud = world, clouds.get(CLOUD)
        self.states = {spec.name: PoolState(spec) for spec in pools.every()}
        for state in self.states.values():
            self._count(state)
        index, tick = 0, 0.0
        while tick <= self.end:
            while index < len(events) and events[index].time <= tick:
                event = events[index]
                self._advance(event.time)
                self._handle(event)
                index += 1
            self._advance(tick)
            due = [state for state in self.states.values() if self._due(state, tick)]
            if due:
                self._pass(due)
            waiting = any(state.line for state in self.states.values())
            if index >= len(events) and not waiting and tick >= self.measured_to:
                break
            tick = self._next_tick(tick, events[index].time if index < len(events) else None)
        self._advance(max(self.seconds, self.measured_to))

    def _next_tick(self, tick: float, next_event: float | None) -> float:
        """The next tick at which a pass may be due: the next one if a pool is off its
        target or its target is to be computed again, else the first at or after the next
        event, the next ready time of a VM, the next time a pool's target may change, or
        the end of a pool's scale_down_delay."""
        step = tick + self.interval
        if self._every_tick(step):
            return step
        soonest = [next_event] if next_event is not None else []
        if self.options.every_tick is not None and self.options.every_tick[0] > tick:
            soonest.append(self.options.every_tick[0])
        for state in self.states.values():
            if state.stale:
                return step
            soonest += [self._pass_wanted(state), state.target_until]
            ready = self.world.next_ready(state.spec.name, state.last_pass)
            if ready is not None:
                soonest.append(ready)
        nearest = min(soonest, default=math.inf)
        if nearest <= step:
            return step
        if nearest == math.inf:  # nothing to come: the end of the days, else of the replay
            nearest = self.measured_to if tick < self.measured_to else self.end
        return math.ceil(nearest / self.interval) * self.interval

    def _advance(self, seconds: float) -> None:
        """Move the clock to ``seconds``, counting the idle VMs of every pool till then."""
        if seconds < self.seconds:
            return
        for state in self.states.values():
            self._idle_until(state, seconds)
        self.seconds = seconds

    def _idle_until(self, state: PoolState, seconds: float) -> None:
        begin = max(state.idle_since, self.measured_from)
        end = min(seconds, self.measured_to)
        if end > begin:
            state.idle_seconds += (state.free + state.booting) * (end - begin)
        state.idle_since = seconds

    def _count(self, state: PoolState) -> None:
        """Read the pool's free and booting VMs from the ledger (after a change)."""
        self._idle_until(state, self.seconds)
        totals = ledger.pool_totals(state.spec.name)
        state.free, state.booting = totals["free"], totals["booting"]

    def _measured(self, seconds: float) -> bool:
        return self.measured_from <= seconds < self.measured_to

    # -- what is due --

    def _due(self, state: PoolState, tick: float) -> bool:
        """Whether the pass at ``tick`` would do anything for the pool: an event since its
        last pass, a VM that has reached its ready time since, or a level off its target
        (a surplus once its ``scale_down_delay`` is over, or gone since the last pass)."""
        if state.touched:
            return True
        ready = self.world.next_ready(state.spec.name, state.last_pass)
        if ready is not None and ready <= tick:
            return True
        self._refresh_target(state)
        return self._off_target(state)

    def _every_tick(self, seconds: float) -> bool:
        span = self.options.every_tick
        return span is not None and span[0] <= seconds < span[1]

    def _off_target(self, state: PoolState) -> bool:
        return self._pass_wanted(state) <= self.seconds

    def _pass_wanted(self, state: PoolState) -> float:
        """From when the pool's level, against its target as last computed, makes a pass
        do something (now, or later: the end of a surplus's ``scale_down_delay``): fewer
        VMs free or booting than the target, free VMs beyond it (retired once they have
        been so for the delay, the pass noting since when before), or a surplus the last
        pass noted gone. Infinity when the level makes no pass do anything."""
        if state.free + state.booting < state.target:
            return -math.inf
        if state.free > state.target:
            if self._every_tick(self.seconds) or state.surplus_since is None:
                return -math.inf
            return state.surplus_since + state.spec.scale_down_delay
        return -math.inf if state.surplus_since is not None else math.inf

    def _refresh_target(self, state: PoolState) -> None:
        """Compute the pool's target again if it may have changed since it last was."""
        due = state.stale or self.seconds >= state.target_until
        if not (due or self._every_tick(self.seconds)):
            return
        spec = self._spec_for_pass(state)
        state.target = sizing.target(spec, self.now()).free
        state.target_until = self._target_changes(spec, state)
        state.stale = False

    def _target_changes(self, spec, state: PoolState) -> float:
        """The soonest time after now at which the pool's target may change by the clock
        alone (the ledger and the history as they are): the floor at a schedule's cron or
        until, the demand as an assign or a refusal leaves its window, the forecast as
        one enters or leaves a span of a previous day. Each a little before and after:
        the ledger keeps times to the microsecond."""
        now, soonest = self.seconds, math.inf
        local = self.now().astimezone(zoneinfo.ZoneInfo(spec.timezone))
        for entry in spec.schedule:
            for expression in (entry.cron, entry.until):
                after = croniter(expression, local).get_next(datetime.datetime)
                soonest = min(soonest, (after - START).total_seconds() - EPSILON)
        offsets = []
        if spec.demand is not None:
            offsets.append(spec.demand.window)
        if spec.forecast is not None:
            spread = spec.forecast.spread
            for days in range(1, spec.forecast.days + 1):
                offsets += [days * DAY - spread - state.lead, days * DAY + spread]
        for offset in offsets:
            for moment in (offset - EPSILON, offset + EPSILON):
                index = bisect.bisect_right(state.demand, now - moment)
                if index < len(state.demand):
                    soonest = min(soonest, state.demand[index] + moment)
        return soonest

    # -- the dispatcher's calls --

    def _pass(self, due: list[PoolState]) -> None:
        """The worker's pass over the pools ``due``, then their lines served."""
        specs = [self._spec_for_pass(state) for state in due]
        for report in pool_pass.run(specs):
            if report.skipped or report.problems:
                raise RuntimeError(f"pool {report.name}: the pass failed: {report.problems}")
        for state in due:
            state.last_pass, state.touched, state.stale = self.seconds, False, True
            if self._measured(self.seconds):
                state.passes += 1
            self._count(state)
            self._after_pass(state)
            self._serve(state)

    def _after_pass(self, state: PoolState) -> None:
        """What the pass changed that the pool's target reads: since when it holds a
        surplus, and its median boot (the forecast's lead time)."""
        since = passes.surplus_since(state.spec.name)
        state.surplus_since = None if since is None else (since - START).total_seconds()
        if state.spec.forecast is not None:
            state.lead = sizing.median_boot(state.spec) + self.interval

    def _spec_for_pass(self, state: PoolState):
        """The pool's spec for a pass: as configured, and where waiting assigns ask for
        VMs, its floor (``min_ready``, and each schedule entry's) raised by one for each
        assign in its line, as a request in line would ask for one VM more."""
        if self.options.line != "asks" or not state.line:
            return state.spec
        spec, more = state.spec, len(state.line)
        raised = {"min_ready": min(spec.min_ready + more, spec.max_total)}
        if spec.schedule:
            raised["schedule"] = tuple(
                dataclasses.replace(entry, min_ready=min(entry.min_ready + more, spec.max_total))
                for entry in spec.schedule
            )
        return dataclasses.replace(spec, **raised)

    def _handle(self, event: Event) -> None:
        state = self.states[event.vm_type]
        state.touched = True
        if event.kind == "assign":
            measured = self._measured(event.time)
            if measured:
                state.assigns += 1
            # Tried even behind a line, so that the refusal is on record (demand counts
            # it); a line waits only while no VM is free, so first come is first served.
            if self._assign(state, event.user):
                if measured:
                    state.warm += 1
            else:
                state.line.append(Waiter(event.user, event.time, measured))
                state.stale = True
            return
        held = state.holdings.get(event.user)
        if held:
            self._release(state, held.popleft())
            return
        for waiter in state.line:
            if waiter.user == event.user and not waiter.release_after:
                waiter.release_after = True
                return
        state.unmatched_releases += 1

    def _assign(self, state: PoolState, user: str) -> bool:
        """The real assign by type: whether it gave ``user`` a VM."""
        state.stale = True
        state.demand.append(self.seconds)  # an assign, or its refusal: demand either way
        try:
            answer = operations.assign_from_pool(None, CALLER, user, state.spec.name)
        except PoolEmptyError:
            return False
        state.holdings.setdefault(user, deque()).append(answer["id_vm"])
        self._count(state)
        return True

    def _release(self, state: PoolState, node_id: str) -> None:
        operations.release_vm(self.cloud, CALLER, node=node_id)
        state.stale = True
        self._count(state)

    def _serve(self, state: PoolState) -> None:
        """The pool's line served first come, first served, while it has free VMs."""
        while state.line and state.free:
            waiter = state.line[0]
            if not self._assign(state, waiter.user):
                break
            state.line.popleft()
            state.stale = True
            if waiter.measured:
                state.waits.append(self.seconds - waiter.asked_at)
            if waiter.release_after:
                self._release(state, state.holdings[waiter.user].pop())

    # -- the figures --

    def _figures(self, world) -> dict:
        by_pool = {}
        for name, state in sorted(self.states.items()):
            created = sum(
                1 for made in world.created if made.pool == name and self._measured(made.at)
            )
            unserved = sum(1 for waiter in state.line if waiter.measured)
            by_pool[name] = summary(
                state.assigns, state.warm, state.waits, state.idle_seconds, created, unserved
            )
            by_pool[name]["passes"] = state.passes
            by_pool[name]["unmatched_releases"] = state.unmatched_releases
        total = summary(
            sum(state.assigns for state in self.states.values()),
            sum(state.warm for state in self.states.values()),
            [wait for state in self.states.values() for wait in state.waits],
            sum(state.idle_seconds for state in self.states.values()),
            sum(figures["vms_created"] for figures in by_pool.values()),
            sum(figures["unserved"] for figures in by_pool.values()),
        )
        total["passes"] = sum(figures["passes"] for figures in by_pool.values())
        total["unmatched_releases"] = sum(f["unmatched_releases"] for f in by_pool.values())
        first = 2 if self.options.days > 1 else 1
        return {
            "policy": self.options.policy,
            "days": self.options.days,
            "measured_days": list(range(first, self.options.days + 1)),
            "seed": self.options.seed,
            "line": self.options.line,
            "min_ready": {name: state.spec.min_ready for name, state in self.states.items()},
            "pools": by_pool,
            "total": total,
        }


def summary(assigns, warm, waits, idle_seconds, created, unserved) -> dict:
    """One row of figures: assigns, warm hits and their share, the waits of the others
    (p50, p99, in seconds; None without any), idle VM-hours, VMs created, assigns never
    served."""
    return {
        "assigns": assigns,
        "warm_hits": warm,
        "warm_share": warm / assigns if assigns else None,
        "waited": len(waits),
        "wait_p50": common.percentile(waits, 0.50) if waits else None,
        "wait_p99": common.percentile(waits, 0.99) if waits else None,
        "idle_vm_hours": idle_seconds / 3600,
        "vms_created": created,
        "unserved": unserved,
    }


# -- the sweep ---------------------------------------------------------------------------


def sweep(trace: list[Event], options: Options, chosen: dict) -> dict:
    """For each pool, the smallest static ``min_ready`` whose warm-hit share reaches the
    chosen policy's over the same days, and its idle VM-hours beside the policy's. Each
    try replays every pool at once (the pools do not meet), each at its own size:
    doubling until the share is reached, then halving the gap."""
    names = sorted(chosen["pools"])
    wanted = {name: chosen["pools"][name]["warm_share"] or 0.0 for name in names}
    low = dict.fromkeys(names, -1)  # the largest size known to fall short
    high: dict[str, int | None] = dict.fromkeys(names, None)  # the smallest known to reach
    found: dict[str, dict] = {}
    size = dict.fromkeys(names, 0)
    tries = 0
    while True:
        static = Options(**{**dataclasses.asdict(options), "policy": "static", "sizes": dict(size)})
        played = Replay(trace, static).run()
        tries += 1
        for name in names:
            figures = played["pools"][name]
            if (figures["warm_share"] or 0.0) >= wanted[name] - 1e-9:
                high[name], found[name] = size[name], figures
            else:
                low[name] = size[name]
                if size[name] >= MAX_TOTAL:  # not even the largest: what it gives
                    high[name], found[name] = MAX_TOTAL, figures
        unsettled = [name for name in names if high[name] is None or high[name] - low[name] > 1]
        if not unsettled:
            break
        for name in unsettled:
            if high[name] is None:
                size[name] = min(MAX_TOTAL, max(1, 2 * size[name]))
            else:
                size[name] = (low[name] + high[name]) // 2
    by_pool = {}
    for name in names:
        policy_idle = chosen["pools"][name]["idle_vm_hours"]
        static_idle = found[name]["idle_vm_hours"]
        by_pool[name] = {
            "min_ready": high[name],
            "warm_share": found[name]["warm_share"],
            "idle_vm_hours": static_idle,
            "policy_idle_vm_hours": policy_idle,
            "ratio": policy_idle / static_idle if static_idle else None,
        }
    policy_idle = chosen["total"]["idle_vm_hours"]
    static_idle = sum(entry["idle_vm_hours"] for entry in by_pool.values())
    total = {
        "idle_vm_hours": static_idle,
        "policy_idle_vm_hours": policy_idle,
        "ratio": policy_idle / static_idle if static_idle else None,
    }
    return {"pools": by_pool, "total": total, "replays": tries}


# -- the command -------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pools_replay",
        description="Replay a day's trace of assigns and releases against warm pools on a "
        "simulated clock and cloud; print warm hits, waits and idle VM-hours.",
    )
    parser.add_argument("trace", type=Path, help="CSV: time_s,event,user,vm_type")
    parser.add_argument("--policy", choices=POLICIES, default="static")
    parser.add_argument(
        "--min-ready", type=int, default=1, help="each pool's min_ready (the schedule's floor)"
    )
    parser.add_argument("--days", type=int, default=1, help="days played (figures: 2..N)")
    parser.add_argument(
        "--jitter", type=float, default=300.0, help="σ in seconds of each user's shift a day"
    )
    parser.add_argument(
        "--boot-seconds",
        default="90,30",
        metavar="MEAN,JITTER",
        help="a VM runs MEAN ± JITTER seconds (uniform) after its create call",
    )
    parser.add_argument(
        "--line",
        choices=("asks", "waits"),
        default="asks",
        help="asks: each assign waiting in line asks its pool for one more VM (default); "
        "waits: it waits for the VMs the policy makes",
    )
    parser.add_argument(
        "--sweep", action="store_true", help="also the smallest static min_ready as warm"
    )
    parser.add_argument("--json", action="store_true", help="the figures as one JSON object")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--every-tick",
        action="store_true",
        help="a check of the replay: the target computed and a pass considered at every "
        "tick, none skipped (the same figures, many times slower)",
    )
    args = parser.parse_args(argv)
    try:
        mean, jitter = (float(part) for part in args.boot_seconds.split(","))
    except ValueError:
        parser.error("--boot-seconds: MEAN,JITTER in seconds, such as 90,30")
    if not 0 <= jitter <= mean:
        parser.error("--boot-seconds: JITTER from 0 to MEAN")
    args.boot_mean, args.boot_jitter = mean, jitter
    if args.min_ready < 0 or args.min_ready > MAX_TOTAL:
        parser.error(f"--min-ready: from 0 to {MAX_TOTAL}")
    if args.days < 1:
        parser.error("--days: 1 or more")
    if args.jitter < 0:
        parser.error("--jitter: 0 or more seconds")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    options = Options(
        policy=args.policy,
        min_ready=args.min_ready,
        days=args.days,
        jitter=args.jitter,
        boot_mean=args.boot_mean,
        boot_jitter=args.boot_jitter,
        seed=args.seed,
        line=args.line,
        every_tick=(0.0, math.inf) if args.every_tick else None,
    )
    try:
        trace = read_trace(args.trace)
        figures = Replay(trace, options).run()
        if args.sweep:
            figures["sweep"] = sweep(trace, options, figures)
    except (TraceError, PolicyError) as exc:
        print(f"pools_replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
    else:
        print(report(figures, args))
    return 0


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.0f} s"


def report(figures: dict, args) -> str:
    """The figures as aligned tables, for a person."""
    days = figures["measured_days"]
    measured = f"day {days[0]}" if len(days) == 1 else f"days {days[0]}..{days[-1]}"
    lines = [
        f"{args.trace}: policy {figures['policy']}, --min-ready {args.min_ready}, "
        f"{figures['days']} day(s) played, figures of "
        f"{measured}; boot {args.boot_seconds} s, jitter {args.jitter:g} s, seed "
        f"{figures['seed']}, line {figures['line']}",
        "",
    ]
    rows = [
        ["pool", "assigns", "warm hits", "warm", "wait p50", "wait p99", "idle VM-h", "created"]
    ]
    unserved = []
    entries = [*sorted(figures["pools"].items()), ("total", figures["total"])]
    for name, entry in entries:
        rows.append(
            [
                name,
                str(entry["assigns"]),
                str(entry["warm_hits"]),
                _share(entry["warm_share"]),
                _seconds(entry["wait_p50"]),
                _seconds(entry["wait_p99"]),
                f"{entry['idle_vm_hours']:.2f}",
                str(entry["vms_created"]),
            ]
        )
        if entry["unserved"] and name != "total":
            unserved.append(f"{name}: {entry['unserved']} assigns never served")
    lines += common.table(rows).splitlines()
    lines += unserved
    sweep_figures = figures.get("sweep")
    if sweep_figures:
        lines += ["", "The smallest static min_ready as warm, over the same days:"]
        rows = [["pool", "static min_ready", "warm", "idle VM-h", "policy idle VM-h", "ratio"]]
        for name, entry in sorted(sweep_figures["pools"].items()):
            rows.append(
                [
                    name,
                    str(entry["min_ready"]),
                    _share(entry["warm_share"]),
                    f"{entry['idle_vm_hours']:.2f}",
                    f"{entry['policy_idle_vm_hours']:.2f}",
                    "-" if entry["ratio"] is None else f"{entry['ratio']:.2f}",
                ]
            )
        total = sweep_figures["total"]
        rows.append(
            [
                "total",
                "",
                "",
                f"{total['idle_vm_hours']:.2f}",
                f"{total['policy_idle_vm_hours']:.2f}",
                "-" if total["ratio"] is None else f"{total['ratio']:.2f}",
            ]
        )
        lines += common.table(rows).splitlines()
        lines.append(f"({sweep_figures['replays']} static replays)")
    seconds = figures["seconds"]
    lines += [
        "",
        f"{seconds['per_day']:.1f} s of wall time per simulated day "
        f"({seconds['total']:.1f} s in all)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
