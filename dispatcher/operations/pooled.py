"""Assigning a VM of a warm pool by its vm_type alone."""

import functools
import math
import time
from typing import NamedTuple

from flask import current_app
from sqlalchemy import literal

from .. import clouds, history, leases, metrics, pools, quotas, revisions, tagging
from ..bookkeeping import ledger
from ..clouds import Cloud
from ..errors import DispatcherError, NotFoundError, PoolEmptyError
from ..extensions import db, nothing_written
from ..pools import passes
from ..serializers import as_utc, utc_iso


def assign_from_pool(
    cloud: Cloud | None,
    caller: str,
    user: str,
    vm_type: str,
    lease: int | None = None,
    emulate: bool = False,
    tags: dict | None = None,
) -> dict:
    """Give a free VM of the pool ``vm_type`` to ``user``, on ``cloud`` if the request
    named one, else on any of the pool's clouds, leased for ``lease`` seconds (else the
    pool's or the default lease, if any), tagged with ``tags``; ``{"id_vm", "id",
    "result", "cloud", "hostname", "public_ips", "private_ips"}``, and ``expires_at`` for
    a leased VM.

    Like an assign by node, every outcome but a dry run's is in the history and counted:
    a refusal under the cloud the request named (else the pool's first cloud, or the
    default cloud when no pool serves ``vm_type``).

    :raises NotFoundError: no pool serves ``vm_type``, or it has no VMs on that cloud.
    :raises InvalidRequestError: a lease longer than its cap; tags beyond TAG_MAX, or
        without a key the pool requires (neither in the history: nothing is written).
    :raises QuotaExceededError: a quota of the caller refuses it.
    :raises PoolEmptyError: the pool has no free VM there now (with Retry-After).
    """
    spec = pools.find(vm_type)
    tags = tagging.accepted(tags)
    tagging.require(spec, tags)
    entry = {
        "action": "assign",
        "caller": caller,
        "user": user,
        "vm_type": vm_type,
        "tags": tags or None,
    }
    try:
        taken = _take_by_rules_in_force(
            spec, cloud, caller, user, vm_type, lease, emulate, tags, entry
        )
    except DispatcherError as exc:
        if not nothing_written():
            db.session.rollback()
        if not emulate:
            where = cloud or clouds.get(spec.cloud_names[0] if spec is not None else None)
            history.record(
                **entry, cloud=where.name, outcome=exc.outcome, message=exc.message[:1000]
            )
            db.session.commit()
        raise
    answer = taken.answer
    if not emulate:
        entry.update(cloud=answer["cloud"], id_vm=answer["id_vm"], hostname=answer["hostname"])
        if taken.recorded:
            history.counted(**entry, outcome="ok")
        else:
            history.record(**entry, outcome="ok", message=answer["result"])
        db.session.commit()  # with the statement alone, only the connection given back
    return answer


class Taken(NamedTuple):
    answer: dict
    rules_seen: int | None  # the quota rules' revision the statement taking the VM saw
    recorded: bool  # its history entry written by that statement


def _take_by_rules_in_force(spec, cloud, caller, user, vm_type, lease, emulate, tags, entry):
    """``_take`` decided by the quota rules the process keeps, which saves reading them,
    and where nothing else holds a transaction, as one statement with its history
    ``entry`` (the assign's without the VM's fields); if that statement finds that the
    rules have changed since (or a refusal finds they have), decided again by the rules as
    they are, a VM taken by the first given back by the rollback."""
    take = functools.partial(_take, spec, cloud, caller, user, vm_type, lease, emulate, tags)
    guessed = None if emulate else quotas.guessed_revision()
    if guessed is None:
        return take(None)
    try:
        taken = take(guessed, entry)
        if taken.rules_seen == guessed:
            return taken
    except DispatcherError:
        # A refusal by rules since changed is not theirs to make.
        if quotas.revision_now() == guessed:
            raise
    if not nothing_written():
        db.session.rollback()
    return take(quotas.revision_now())


# How the answer and the history tell of an assign from a pool: "Node <id> assigned".
ASSIGNED_WORD = "assigned"


def _recorded_take(changed):
    """The history entry of an assign from a pool as the statement that takes the VM
    writes it: the cloud, id and hostname of the VM from its row, and the answer's
    result (``Node <id> assigned``)."""
    said = literal("Node ") + changed.c.id_vm + literal(f" {ASSIGNED_WORD}")
    taken = {"cloud": changed.c.cloud, "id_vm": changed.c.id_vm, "hostname": changed.c.hostname}
    return history.written_by(changed, {**taken, "message": said})


def _take(
    spec, cloud: Cloud | None, caller, user, vm_type, lease, emulate, tags, rules_at, entry=None
) -> Taken:
    """The assign, decided by the quota rules at the revision ``rules_at`` (None: read
    now); with its history ``entry`` (the assign's but the VM's fields), as a statement
    alone where the session holds no transaction (``ledger.alone_possible``)."""
    if spec is None:
        raise NotFoundError(
            f"no valid node id nor hostname here, and no pool serves vm_type {vm_type}"
        )
    where = spec.cloud_names
    if cloud is not None:
        if cloud.name not in where:
            raise NotFoundError(f"pool {spec.name} keeps no VMs on cloud {cloud.name}")
        where = [cloud.name]
    seconds = quotas.admit_assign(
        caller, spec.name, lease, leases.resolve(lease, spec), emulate, revision=rules_at
    )
    expires_at = leases.until(seconds)
    alone = None
    if entry is not None and rules_at is not None and ledger.alone_possible():
        # Nothing read or locked to hold (a quota that counts would have locked): the
        # statement may be the transaction, guarded by the rules' revision.
        bound = history.bound(**entry, outcome="ok")
        alone = ledger.Alone(_recorded_take, bound, rules_at)
    started = time.perf_counter()
    if emulate:
        row = ledger.peek_free(spec.name, where, spec.templates)
    else:
        row = ledger.take_free(
            spec.name, where, user, vm_type, caller, expires_at, spec.templates, tags, alone
        )
    metrics.POOL_ASSIGN_SECONDS.labels(spec.name).observe(time.perf_counter() - started)
    if row is None:
        # The next pass of the worker is the soonest a VM can be free: in whole seconds,
        # as Retry-After takes them.
        retry_after = max(1, math.ceil(current_app.config["POOLS_INTERVAL"]))
        raise PoolEmptyError(_why_empty(spec, where, cloud is not None), retry_after)
    verb = f"would be assigned to {user} (emulated)" if emulate else ASSIGNED_WORD
    answer = {
        "id_vm": row.id_vm,
        "id": row.id,
        "result": f"Node {row.id_vm} {verb}",
        "cloud": row.cloud,
        "hostname": row.hostname,
        "public_ips": row.public_ips or [],
        "private_ips": row.private_ips or [],
    }
    if expires_at is not None:
        answer["expires_at"] = utc_iso(expires_at)
    seen = ledger.revision_seen(row, revisions.QUOTA_RULES)
    return Taken(answer, seen, alone is not None)


def _why_empty(spec, where: list[str], named: bool) -> str:
    """Why a pool has no free VM (on the cloud the request ``named``): how many are
    booting, and its last failed refill."""
    counted = ledger.pool_counts(spec.name)
    booting = sum(counted.get(cloud, {}).get("booting", 0) for cloud in where)
    place = f" on cloud {where[0]}" if named else ""
    message = f"pool {spec.name} has no free VM{place} now: {booting} booting"
    failures = [state for state in passes.cloud_states(spec.name).values() if state.last_error]
    if failures:
        last = max(failures, key=lambda state: as_utc(state.last_error_at))
        when = utc_iso(last.last_error_at)
        message += f"; the last refill failed at {when} on {last.cloud}: {last.last_error}"
    return message
