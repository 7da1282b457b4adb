"""What a pool holds, for ``GET /api/v1/pools``, ``dispatcher pools status`` and /metrics."""

from prometheus_client.core import GaugeMetricFamily

from ..bookkeeping import ledger
from ..serializers import utc_iso
from ..shapes import BOOLEAN, INTEGER, INTEGER_OR_NULL, TEXT, TEXT_OR_NULL, describes, list_of
from . import overrides, passes, sizing
from .sizing import Target
from .spec import PoolSpec

_COUNTS = {state: INTEGER for state in ledger.STATES.values()}
_ERROR = {
    "oneOf": [
        {"type": "null"},
        {
            "type": "object",
            "properties": {"message": TEXT, "time": TEXT},
            "required": ["message", "time"],
        },
    ]
}


@describes("PoolCloud", {"cloud": TEXT, **_COUNTS, "last_error": _ERROR})
def pool_cloud_to_dict(cloud: str, counted: dict, state) -> dict:
    """One cloud of a pool: its VMs by state, and its last failure (null if none)."""
    last_error = None
    if state is not None and state.last_error:
        last_error = {"message": state.last_error, "time": utc_iso(state.last_error_at)}
    return {"cloud": cloud, **counted, "last_error": last_error}


_OVERRIDE = {
    "oneOf": [
        {"type": "null"},
        {
            "type": "object",
            "properties": {
                "min_ready": INTEGER_OR_NULL,
                "max_total": INTEGER_OR_NULL,
                "paused": BOOLEAN,
                "draining": BOOLEAN,
                "set_by": TEXT_OR_NULL,
                "time": TEXT,
            },
            "required": ["min_ready", "max_total", "paused", "draining", "set_by", "time"],
        },
    ]
}


def override_to_dict(row) -> dict | None:
    """An admin's override of a pool: its sizes (null: the configured one), its flags, who
    set it and when; None without one."""
    if row is None:
        return None
    return {
        "min_ready": row.min_ready,
        "max_total": row.max_total,
        "paused": row.paused,
        "draining": row.draining,
        "set_by": row.set_by,
        "time": utc_iso(row.set_at),
    }


def configured(spec: PoolSpec) -> dict:
    """The sizes POOLS gives the pool ``spec``, whatever an admin's override says."""
    return {"min_ready": spec.min_ready, "max_total": spec.max_total}


@describes(
    "PoolTarget",
    {
        "free": INTEGER,
        "because": TEXT,
        "floor": INTEGER,
        "demand": INTEGER_OR_NULL,
        "forecast": INTEGER_OR_NULL,
        "requested": INTEGER,
    },
)
def target_to_dict(target: Target) -> dict:
    """What the pool keeps free or booting now (``free``), the part that set it
    (``because``), and each part: the floor (the schedule's or min_ready), the demand's
    and the forecast's (null where the pool has none), and the VMs requests in line still
    want of it (added to the largest part)."""
    return {
        "free": target.free,
        "because": target.because,
        "floor": target.floor,
        "demand": target.demand,
        "forecast": target.forecast,
        "requested": target.requested,
    }


_POOL = {
    "name": TEXT,
    "min_ready": INTEGER,
    "max_total": INTEGER,
    "configured": {
        "type": "object",
        "properties": {"min_ready": INTEGER, "max_total": INTEGER},
        "required": ["min_ready", "max_total"],
    },
    "paused": BOOLEAN,
    "draining": BOOLEAN,
    "require_tags": list_of(TEXT),
    "override": _OVERRIDE,
    "target": target_to_dict,
    **_COUNTS,
    "unready": INTEGER,
    "current": INTEGER,
    "outdated": INTEGER,
    "last_pass": TEXT_OR_NULL,
    "clouds": list_of(pool_cloud_to_dict),
}


def _readiness(spec: PoolSpec, totals: dict) -> dict:
    """Of the pool's booting VMs, those not answering their ready check; of its live VMs
    (booting, free, reserved, assigned), how many are made from its clouds' current
    templates and how many from one it no longer has."""
    unready, outdated = ledger.pool_unready_outdated(spec.name, spec.templates)
    live = totals["booting"] + totals["free"] + totals["reserved"] + totals["assigned"]
    return {"unready": unready, "current": live - outdated, "outdated": outdated}


@describes("Pool", _POOL)
def pool_to_dict(spec: PoolSpec) -> dict:
    """POOL of the pool ``spec`` as POOLS configures it: its sizes in force (an admin's
    override applied) and as configured, its flags, the tag keys its assigns must carry,
    the override, its VMs by state over all clouds and per cloud, of its booting VMs
    those that failed their last ready check (``unready``), of its live VMs those made
    from its current templates and from one it no longer has (``current``,
    ``outdated``), when the manager last finished a pass over it (times in ISO 8601,
    UTC)."""
    row = overrides.of(spec.name)
    in_force = overrides.applied(spec, row)
    counted = ledger.pool_counts(spec.name)
    states = passes.cloud_states(spec.name)
    per_cloud = [
        pool_cloud_to_dict(
            name, counted.get(name, dict.fromkeys(ledger.STATES.values(), 0)), states.get(name)
        )
        for name in spec.cloud_names
    ]
    totals = {state: sum(entry[state] for entry in per_cloud) for state in ledger.STATES.values()}
    return {
        "name": spec.name,
        "min_ready": in_force.min_ready,
        "max_total": in_force.max_total,
        "configured": configured(spec),
        "paused": in_force.paused,
        "draining": in_force.draining,
        "require_tags": list(spec.require_tags),
        "override": override_to_dict(row),
        "target": target_to_dict(sizing.target(in_force)),
        **totals,
        **_readiness(spec, totals),
        "last_pass": utc_iso(passes.last_pass(spec.name)),
        "clouds": per_cloud,
    }


@describes(
    "LeasedVM",
    {
        "cloud": TEXT,
        "id_vm": TEXT,
        "hostname": TEXT_OR_NULL,
        "user": TEXT_OR_NULL,
        "expires_at": TEXT,
    },
)
def leased_vm_to_dict(row) -> dict:
    """An assigned VM of a pool with a lease: where it is, whose it is, when it ends."""
    return {
        "cloud": row.cloud,
        "id_vm": row.id_vm,
        "hostname": row.hostname,
        "user": row.user,
        "expires_at": utc_iso(row.expires_at),
    }


@describes("PoolDetail", {**_POOL, "leases": list_of(leased_vm_to_dict)})
def pool_detail_to_dict(spec: PoolSpec) -> dict:
    """POOL, and its leased VMs, the soonest to end first."""
    return {
        **pool_to_dict(spec),
        "leases": [leased_vm_to_dict(row) for row in ledger.pool_leased(spec.name)],
    }


@describes("PoolLevel", {"id": INTEGER, "time": TEXT, **_COUNTS})
def level_to_dict(level) -> dict:
    """A pool's VMs by state at the end of one pass of the pool manager."""
    return {
        "id": level.id,
        "time": utc_iso(level.at),
        "booting": level.booting,
        "free": level.free,
        "reserved": level.reserved,
        "assigned": level.assigned,
        "faulty": level.faulty,
    }


class PoolCollector:
    """For /metrics: the VMs of each pool in each state, read from the ledger at each scrape."""

    def __init__(self, specs: list[PoolSpec]):
        self.specs = specs

    def collect(self):
        gauge = GaugeMetricFamily(
            "dispatcher_pool_vms", "VMs of each warm pool, by state.", labels=["pool", "state"]
        )
        for spec in self.specs:
            for state, number in ledger.pool_totals(spec.name).items():
                gauge.add_metric([spec.name, state], number)
        yield gauge
