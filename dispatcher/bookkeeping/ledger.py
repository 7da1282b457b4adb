"""The local ledger's rows (``models.Assignment``): the one module that writes them.

Every transition of a VM's row is here, each one conditional statement that says whether
it happened, so that of two processes changing one row at once exactly one wins:

    (new) --add_booting--> BOOTING --promote--> FREE --assign / take_free--> ASSIGNED
    (new) --register / adopt------------------> FREE <--release-------------- ASSIGNED
    FREE --set_aside--> RESERVED (for a queued request) --hand_over--> ASSIGNED (all of the
    request's at once), or RESERVED --put_back--> FREE
    ASSIGNED --extend, mark_warned--> ASSIGNED (a new end of its lease; its warning sent)
    BOOTING, FREE --note_check--> the same (a ready check's outcome), or FREE --> FAULTY
    (its failed checks in a row reached the pool's limit)
    any live state --mark_faulty--> FAULTY --mark_deleted--> DELETED
    any live state --mark_deleted--> DELETED (destroyed, or gone from its cloud)

A VM set aside for a request, or handed over to it, carries the request's id until it is
free again or ends; an assigned VM carries the tags of its assign (or of its last extend
that had some) until whatever ends the assignment clears them with its holder.

A row of a destroyed VM (DELETED) whose id its cloud gives a new VM is taken over by the
new VM (``add_booting``, ``register``). Each change of a row's state ends the ``Span`` it
had open and opens one in its new state (none once DELETED), in the same transaction (on
PostgreSQL, for one row, in the same statement as its change): the periods quotas count
in VM-hours and usage reports read. Nothing here commits: the use case that changes a row
commits it together with its history entry.

The statements an assign and a release send are built once (per shape of what they set)
and run by SQLAlchemy's Core with bound parameters: building one anew costs more than its
round trip.
"""

import dataclasses
import datetime
import functools
from collections.abc import Callable

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Float,
    Row,
    all_,
    any_,
    bindparam,
    case,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.functions import GenericFunction

from .. import clock, revisions
from ..errors import ConflictError
from ..extensions import db
from ..models import ASSIGNED, BOOTING, DELETED, FAULTY, FREE, RESERVED, Assignment, Span
from ..serializers import as_utc

# The states a pool's VM counts in, as the API names them.
STATES = {
    BOOTING: "booting",
    FREE: "free",
    RESERVED: "reserved",
    ASSIGNED: "assigned",
    FAULTY: "faulty",
}

# What nobody holds: the columns a release, a retirement or a reconcile's mark clears.
HOLDER_CLEARED = {
    "request_id": None,
    "user": None,
    "assigned_at": None,
    "assigned_by": None,
    "expires_at": None,
    "lease_warned_at": None,
    "tags": None,
}


def assigned_values(
    user: str, vm_type: str, assigned_by=None, expires_at=None, tags: dict | None = None
) -> dict:
    """The columns an assign sets on the row it takes (FREE to ASSIGNED): by node or from
    a warm pool alike; no tags (or empty ones) are kept as none."""
    return {
        "status": ASSIGNED,
        "user": user,
        "recipe": vm_type,
        "assigned_at": clock.now(),
        "assigned_by": assigned_by,
        "expires_at": expires_at,
        "lease_warned_at": None,
        "tags": tags or None,
    }


# The tables themselves, for the statements built once: the hot ones (an assign's, a
# release's) are built at import, or once per shape, and a statement of the tables'
# columns is run by SQLAlchemy's Core, without the ORM's work per execution.
_ROWS = Assignment.__table__
_SPANS = Span.__table__
NOW = bindparam("now", type_=_ROWS.c.updated_at.type)


# -- reading ---------------------------------------------------------------------------


def get(row_id, fresh: bool = False) -> Assignment | None:
    """The row with this id (an ASSIGNMENT's ``id``), or None; ``fresh``: read again from
    the database, not as the session last saw it."""
    if row_id is None:
        return None
    return db.session.get(Assignment, row_id, populate_existing=fresh)


# What an assign and a release by node decide by besides the row: the revisions of the
# quota rules and of the pools' overrides, read with the row (``revision_seen``), so that
# the process's copies of them serve without a read of their own.
_DECIDED_BY = (
    revisions.current(revisions.QUOTA_RULES),
    revisions.current(revisions.POOL_OVERRIDES),
)
# The live rows of a cloud with a node id, or with a hostname: read on every assign and
# release by node (the ORM's objects, or the rows' columns with the revisions).
_LIVE_ROWS = (_ROWS.c.cloud == bindparam("cloud"), _ROWS.c.status != DELETED)
_BY = {"node": _ROWS.c.id_vm, "hostname": _ROWS.c.hostname}
_LIVE = {
    (by, columns): (select(_ROWS, *_DECIDED_BY) if columns else select(Assignment)).where(
        *_LIVE_ROWS, column == bindparam("wanted")
    )
    for by, column in _BY.items()
    for columns in (False, True)
}


def rows_of(cloud: str, node_id=None, hostname=None) -> list[Assignment]:
    """The live rows of ``cloud`` with this node id, or else this hostname."""
    return list(db.session.scalars(*_live(cloud, node_id, hostname, columns=False)))


def columns_of(cloud: str, node_id=None, hostname=None) -> list[Row]:
    """``rows_of``, as the rows' columns read (read-only; cheaper than the ORM's objects),
    each with the revisions the statement saw (``revision_seen``)."""
    return list(db.session.execute(*_live(cloud, node_id, hostname, columns=True)))


def revision_seen(row, table: str) -> int | None:
    """The revision of ``table`` (``revisions``) that the statement which read ``row``
    saw: a row of ``columns_of`` or ``take_free``; None for a row read otherwise."""
    return row._mapping.get(f"{table}_revision") if isinstance(row, Row) else None


def _live(cloud: str, node_id, hostname, columns: bool) -> tuple:
    by, wanted = ("node", node_id) if node_id is not None else ("hostname", hostname)
    return _LIVE[by, columns], {"cloud": cloud, "wanted": wanted}


def listed(cloud: str, statuses) -> list[Assignment]:
    """The rows of ``cloud`` in one of ``statuses``, in the order they were made."""
    query = select(Assignment).where(Assignment.cloud == cloud, Assignment.status.in_(statuses))
    return list(db.session.scalars(query.order_by(Assignment.id)))


def live(cloud: str) -> list[Assignment]:
    """Every row of ``cloud`` but the deleted ones."""
    return listed(cloud, list(STATES))


def known_ids(cloud: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` the ledger has a row for on ``cloud``, in any state."""
    if not ids:
        return set()
    query = select(Assignment.id_vm).where(Assignment.cloud == cloud, Assignment.id_vm.in_(ids))
    return set(db.session.scalars(query))


def pool_counts(pool: str) -> dict[str, dict[str, int]]:
    """How many of the pool's VMs each cloud has in each state: ``{cloud: {"free": n, ...}}``."""
    found: dict[str, dict[str, int]] = {}
    rows = db.session.execute(
        select(Assignment.cloud, Assignment.status, func.count())
        .where(Assignment.pool == pool, Assignment.status != DELETED)
        .group_by(Assignment.cloud, Assignment.status)
    )
    for cloud, status, number in rows:
        if status in STATES:
            found.setdefault(cloud, dict.fromkeys(STATES.values(), 0))[STATES[status]] = number
    return found


def pool_totals(pool: str) -> dict[str, int]:
    """How many of the pool's VMs are in each state, over all its clouds."""
    summed = dict.fromkeys(STATES.values(), 0)
    for per_cloud in pool_counts(pool).values():
        for state, number in per_cloud.items():
            summed[state] += number
    return summed


def pool_rows(pool: str, cloud: str) -> list[Assignment]:
    """The pool's rows on ``cloud`` that are not deleted."""
    query = select(Assignment).where(
        Assignment.pool == pool, Assignment.cloud == cloud, Assignment.status != DELETED
    )
    return list(db.session.scalars(query.order_by(Assignment.id)))


def pool_leased(pool: str) -> list[Assignment]:
    """The pool's assigned VMs with a lease, the soonest to end first."""
    query = select(Assignment).where(
        Assignment.pool == pool, Assignment.status == ASSIGNED, Assignment.expires_at.is_not(None)
    )
    return list(db.session.scalars(query.order_by(Assignment.expires_at, Assignment.id)))


def _is_current(templates: dict):
    """Whether a row is made from its cloud's current template (or records none)."""
    made_so = [(_ROWS.c.cloud == cloud) & (_ROWS.c.template == t) for cloud, t in templates.items()]
    return or_(_ROWS.c.template.is_(None), *made_so)


def _free(pool, clouds, templates: dict | None = None, count: int = 1):
    """The free VMs of the pool an assign (or a request) takes, ``count`` at most: those
    made from the current template before outdated ones, then the longest free first.
    ``clouds``: their names, or the condition a statement's parameter puts on the cloud."""
    order = [_ROWS.c.ready_at, _ROWS.c.id]
    if templates:
        order.insert(0, case((_is_current(templates), 0), else_=1))
    on_clouds = clouds if isinstance(clouds, ClauseElement) else _ROWS.c.cloud.in_(clouds)
    return (
        select(_ROWS.c.id)
        .where(_ROWS.c.pool == pool, _ROWS.c.status == FREE, on_clouds)
        .order_by(*order)
        .limit(count)
    )


def peek_free(
    pool: str, clouds: list[str], templates: dict[str, str] | None = None
) -> Assignment | None:
    """A free VM of the pool on one of ``clouds``, left free (for a dry run)."""
    found = db.session.scalar(_free(pool, clouds, templates))
    return get(found)


def pool_unready_outdated(pool: str, templates: dict[str, str]) -> tuple[int, int]:
    """Of the pool's VMs, in one statement: how many booting ones failed their last ready
    check, and how many live ones were made from a template their cloud no longer has."""
    unready = (Assignment.status == BOOTING) & (Assignment.check_failures > 0)
    alive = Assignment.status.in_([BOOTING, FREE, RESERVED, ASSIGNED])
    outdated = alive & ~_is_current(templates)
    found = db.session.execute(
        select(func.count().filter(unready), func.count().filter(outdated)).where(
            Assignment.pool == pool
        )
    ).one()
    return found[0], found[1]


def leases_to_warn(now: datetime.datetime, window: float) -> list[Assignment]:
    """Assigned VMs whose lease ends within ``window`` seconds, not yet warned of."""
    query = select(Assignment).where(
        Assignment.status == ASSIGNED,
        Assignment.expires_at > now,
        Assignment.expires_at <= now + datetime.timedelta(seconds=window),
        Assignment.lease_warned_at.is_(None),
    )
    return list(db.session.scalars(query.order_by(Assignment.expires_at, Assignment.id)))


def leases_ended(now: datetime.datetime) -> list[Assignment]:
    """Assigned VMs whose lease has ended, the longest ended first."""
    query = select(Assignment).where(Assignment.status == ASSIGNED, Assignment.expires_at <= now)
    return list(db.session.scalars(query.order_by(Assignment.expires_at, Assignment.id)))


def left_running(now: datetime.datetime) -> list[Assignment]:
    """VMs of no pool released at the end of their lease whose destroy failed: kept
    faulty, with their lease's end, until the worker destroys them (a pool's own are the
    pool's pass to retire)."""
    query = select(Assignment).where(
        Assignment.status == FAULTY, Assignment.pool.is_(None), Assignment.expires_at <= now
    )
    return list(db.session.scalars(query.order_by(Assignment.id)))


def _quota_pool(columns):
    """The pool an assignment counts in for a quota: its VM's pool, else its vm_type (of
    ``columns``: those of the assignments or of the spans)."""
    kind = columns.recipe if "recipe" in columns else columns.vm_type
    return func.coalesce(columns.pool, kind)


def held_count(holders, pool: str | None = None) -> int:
    """How many VMs ``holders`` (the callers who assigned them; None: anyone) hold now, in
    ``pool`` (None: in any)."""
    statement = _held_count_statement(holders is not None, pool is not None)
    parameters = {"holders": list(holders or ()), "quota_pool": pool}
    return db.session.scalar(statement, parameters)


@functools.lru_cache(maxsize=8)
def _held_count_statement(of_holders: bool, in_pool: bool):
    """``held_count``'s statement, built once (a counted assign asks it every time)."""
    query = select(func.count()).select_from(_ROWS).where(_ROWS.c.status == ASSIGNED)
    if of_holders:
        query = query.where(_ROWS.c.assigned_by.in_(bindparam("holders", expanding=True)))
    if in_pool:
        query = query.where(_quota_pool(_ROWS.c) == bindparam("quota_pool"))
    return query


class seconds_between(GenericFunction):
    """The seconds from one time to another, in the database's own arithmetic: in double
    precision, the type of the sums that add them (on PostgreSQL ``date_part``, not
    ``EXTRACT``, whose numeric result costs several times as much over many rows)."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


class seconds_within(seconds_between):
    """``seconds_between``, 0 where the end comes first: one expression, so that the
    database computes it once per row (a CASE around it would compute it twice)."""

    name = "seconds_within"
    inherit_cache = True


def _seconds_sql(element, compiler, postgresql: bool, **kw) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    seconds = (
        f"date_part('epoch', {end} - {start})"
        if postgresql
        else f"((julianday({end}) - julianday({start})) * 86400.0)"
    )
    if not isinstance(element, seconds_within):
        return seconds
    return f"GREATEST({seconds}, 0)" if postgresql else f"MAX({seconds}, 0.0)"


@compiles(seconds_between)
def _seconds_on_postgresql(element, compiler, **kw) -> str:
    return _seconds_sql(element, compiler, True, **kw)


@compiles(seconds_between, "sqlite")
def _seconds_on_sqlite(element, compiler, **kw) -> str:
    return _seconds_sql(element, compiler, False, **kw)


def held_seconds(
    holders,
    since: datetime.datetime,
    now: datetime.datetime,
    pool: str | None = None,
    leaving_out: int | None = None,
) -> float:
    """The seconds ``holders`` (None: everyone) held VMs of ``pool`` (None: any) between
    ``since`` and ``now``: an ended assignment until its end, one still held until the end
    of its lease (all of it), or until now without a lease. The assignment of the row
    ``leaving_out`` is left out while held. Summed by the database from the assigned
    spans: one statement, however many the period has."""
    shape = (holders is not None, pool is not None, leaving_out is not None)
    parameters = {
        "holders": list(holders or ()),
        "quota_pool": pool,
        "leaving_out": leaving_out,
        "since": since,
        "until": now,
    }
    # To the millisecond: SQLite's arithmetic on days leaves a few microseconds of noise.
    return round(float(db.session.scalar(_held_seconds_statement(*shape), parameters) or 0), 3)


@functools.lru_cache(maxsize=16)
def _held_seconds_statement(of_holders: bool, in_pool: bool, leaving_one_out: bool):
    """``held_seconds``'s statement, built once (a counted assign asks it every time)."""
    spans, moment = _SPANS.c, _SPANS.c.started_at.type
    since, now = bindparam("since", type_=moment), bindparam("until", type_=moment)
    start = case((spans.started_at > since, spans.started_at), else_=since)
    held_to = case((spans.lease_until > now, spans.lease_until), else_=now)
    end = case((spans.ended_at.is_not(None), spans.ended_at), else_=held_to)
    seconds = seconds_between(start, end)
    query = select(func.sum(case((seconds > 0, seconds), else_=0))).where(
        spans.status == ASSIGNED, or_(spans.ended_at.is_(None), spans.ended_at > since)
    )
    if of_holders:
        query = query.where(spans.holder.in_(bindparam("holders", expanding=True)))
    if in_pool:
        query = query.where(_quota_pool(spans) == bindparam("quota_pool"))
    if leaving_one_out:
        leaving_out = bindparam("leaving_out")
        query = query.where(or_(spans.assignment_id != leaving_out, spans.ended_at.is_not(None)))
    return query


def assign_times(pool: str, spans) -> list[datetime.datetime]:
    """When VMs of ``pool`` were assigned within any of ``spans`` (``(start, end)``, the
    end left out), oldest first."""
    within = [(Span.started_at >= start) & (Span.started_at < end) for start, end in spans]
    of_pool = or_(Span.pool == pool, Span.pool.is_(None) & (Span.vm_type == pool))
    query = select(Span.started_at).where(Span.status == ASSIGNED, of_pool, or_(*within))
    return [as_utc(moment) for moment in db.session.scalars(query.order_by(Span.started_at))]


def boot_seconds(pool: str, last: int) -> list[float]:
    """The seconds from creation to ready of the ``last`` VMs of ``pool`` to be ready,
    the newest first."""
    query = (
        select(Assignment.created_at, Assignment.ready_at)
        .where(Assignment.pool == pool, Assignment.ready_at.is_not(None))
        .order_by(Assignment.ready_at.desc())
        .limit(last)
    )
    return [
        max(0.0, (as_utc(ready) - as_utc(created)).total_seconds())
        for created, ready in db.session.execute(query)
    ]


def set_aside_counts(request_id: int) -> dict[str, int]:
    """How many VMs of each pool are set aside for the request: ``{pool: n}``."""
    return set_aside_by_request([request_id]).get(request_id, {})


def set_aside_by_request(request_ids: list[int]) -> dict[int, dict[str, int]]:
    """The VMs set aside for each of these requests, by pool: one statement."""
    if not request_ids:
        return {}
    rows = db.session.execute(
        select(Assignment.request_id, Assignment.pool, func.count())
        .where(Assignment.request_id.in_(list(request_ids)), Assignment.status == RESERVED)
        .group_by(Assignment.request_id, Assignment.pool)
    )
    found: dict[int, dict[str, int]] = {}
    for request_id, pool, number in rows:
        found.setdefault(request_id, {})[pool] = number
    return found


def held_by_request(request_id: int) -> list[Assignment]:
    """The VMs handed over to the request that are still assigned, in the order they were
    made."""
    query = select(Assignment).where(
        Assignment.request_id == request_id, Assignment.status == ASSIGNED
    )
    return list(db.session.scalars(query.order_by(Assignment.id)))


def open_span(row_id: int) -> Span | None:
    """The span the VM with this row id has open (its state's since when), or None."""
    query = select(Span).where(Span.assignment_id == row_id, Span.ended_at.is_(None))
    return db.session.scalars(query.order_by(Span.id.desc()).limit(1)).first()


# -- writing ---------------------------------------------------------------------------

# What a span copies of its row when it opens.
_SPANNED = {
    "assignment_id": Assignment.id,
    "cloud": Assignment.cloud,
    "pool": Assignment.pool,
    "vm_type": Assignment.recipe,
    "size": Assignment.size,
    "status": Assignment.status,
    "user": Assignment.user,
    "holder": Assignment.assigned_by,
    "tags": Assignment.tags,
    "request_id": Assignment.request_id,
    "lease_until": Assignment.expires_at,
}


def _respan(row_ids, opens: bool = True) -> None:
    """These rows changed state, now: the span each had open ends, and (``opens``: they
    are not DELETED) each opens one in its new state, copied from the row. On PostgreSQL
    one statement does both (the end in a CTE, which sees none of the spans it opens)."""
    ids = list(row_ids)
    if not ids:
        return
    now = clock.now()
    ended = _ending(Span.assignment_id.in_(ids), now)
    if not opens:
        db.session.execute(ended)
        return
    opened = select(*_SPANNED.values(), literal(now, Span.started_at.type)).where(
        Assignment.id.in_(ids), Assignment.status != DELETED
    )
    opening = insert(Span).from_select([*_SPANNED, "started_at"], opened)
    if _one_statement():
        db.session.execute(opening.add_cte(ended.cte("ended")))
    else:
        db.session.execute(ended)
        db.session.execute(opening)


def _ending(which, now):
    """The UPDATE that ends the open spans of the rows ``which`` selects, at ``now``."""
    return update(_SPANS).where(which, _SPANS.c.ended_at.is_(None)).values(ended_at=now)


def _one_statement() -> bool:
    """Whether a change of rows and of their spans is sent as one statement: on
    PostgreSQL, whose data-modifying CTEs all run, against one snapshot."""
    return db.session.get_bind().dialect.name == "postgresql"


def _bound(values: dict) -> tuple[tuple, dict]:
    """``values`` of a row's columns split into the shape of a statement that sets them
    (each key, with the SQL expression it is set to, or None for a plain value) and the
    parameters that bind the plain values (``set_<key>``)."""
    shape, parameters = [], {}
    for key, value in sorted(values.items()):
        if isinstance(value, ClauseElement) or hasattr(value, "__clause_element__"):
            shape.append((key, value))
        else:
            shape.append((key, None))
            parameters[f"set_{key}"] = value
    return tuple(shape), parameters


def _setting(shape: tuple) -> dict:
    """The values clause of a statement of this shape (see ``_bound``)."""
    return {
        key: bindparam(f"set_{key}", type_=_ROWS.c[key].type) if expression is None else expression
        for key, expression in shape
    }


def _answering(changed, answer: tuple[str, ...], respanned: bool, also=(), record=None):
    """``changed``, an UPDATE of assignments, answering with the changed rows' ``answer``
    columns and the columns ``also``; ``respanned``: on PostgreSQL, with their spans in
    the same statement, and the history entry ``record`` makes of the changed rows."""
    if respanned:
        return _changed_and_respanned(changed, answer, also, record)
    return changed.returning(*(_ROWS.c[name] for name in answer), *also)


def _changed_and_respanned(changed, answer, also=(), record=None):
    """On PostgreSQL: ``changed`` (an UPDATE of assignments that sets a new status, at
    ``NOW``) as one statement with its spans: the CTE ``changed`` RETURNING the spanned
    columns, the CTE that ends the changed rows' open spans, the CTE that opens one for
    each (not DELETED) in its new state, the CTE of the entry ``record(changed)`` writes
    (if any), and a SELECT of ``answer`` (names of the row's columns) from the changed
    rows, with the columns ``also``. The spans' CTEs see the snapshot of before the
    statement: the span that ends is never the one that opens."""
    rows, written = _respanned(changed, answer, record)
    return select(*(rows.c[name] for name in answer), *also).add_cte(*written)


def _respanned(changed, answer, record=None):
    """The CTEs of ``_changed_and_respanned``: the changed rows (``changed``), and those
    that write their spans and their entry; ``(changed, written)``."""
    returned = {column.key: _ROWS.c[column.key] for column in _SPANNED.values()}
    returned.update((name, _ROWS.c[name]) for name in answer)
    rows = changed.returning(*returned.values()).cte("changed")
    ended = _ending(_SPANS.c.assignment_id.in_(select(rows.c.id)), NOW).cte("ended")
    spanned = [rows.c[column.key] for column in _SPANNED.values()]
    opened = (
        insert(_SPANS)
        .from_select(
            [*_SPANNED, "started_at"],
            select(*spanned, NOW).where(rows.c.status != DELETED),
        )
        .cte("opened")
    )
    written = [ended, opened] + ([record(rows).cte("recorded")] if record is not None else [])
    return rows, written


def _insert_or_revive(cloud: str, id_vm: str, values: dict) -> tuple[Assignment, bool]:
    """A new row for the VM, or its DELETED row taken over; ``(row, made)``. An existing
    live row is left as it is, with ``made`` False."""
    try:
        with db.session.begin_nested():
            row = Assignment(cloud=cloud, id_vm=id_vm, **values)
            db.session.add(row)
        _respan([row.id])
        return row, True
    except IntegrityError:
        # Known already, perhaps recorded by another process this very moment.
        row = db.session.scalars(
            select(Assignment).where(Assignment.cloud == cloud, Assignment.id_vm == id_vm)
        ).one()
    revived = db.session.execute(
        update(Assignment)
        .where(Assignment.id == row.id, Assignment.status == DELETED)
        .values(**{"created_at": clock.now(), "updated_at": clock.now(), **values})
        .execution_options(synchronize_session=False)
    ).rowcount
    if revived:
        _respan([row.id])
    db.session.refresh(row)
    return row, bool(revived)


def add_booting(
    pool: str,
    cloud: str,
    node: dict,
    creation_id: str | None,
    template: str | None = None,
    size: str | None = None,
) -> Assignment:
    """Record a VM a pool made (or adopts) as booting, made from ``template`` with
    ``size`` (None: not known, for one adopted).

    :raises ConflictError: a VM the ledger holds has that id (libcloud's Dummy numbers
        its nodes by their count, and gives a live node's id again after a destroy).
    """
    values = {
        # On the dispatcher's clock: the pool's boot_timeout counts from it.
        "created_at": clock.now(),
        "hostname": node["name"] or node["id"],
        "recipe": pool,
        "pool": pool,
        "creation_id": creation_id,
        "status": BOOTING,
        "user": None,
        "ready_at": None,
        "assigned_by": None,
        "expires_at": None,
        "lease_warned_at": None,
        "checked_at": None,
        "check_failures": 0,
        "template": template,
        "request_id": None,
        "tags": None,
        "size": size,
    }
    row, made = _insert_or_revive(cloud, node["id"], values)
    if not made:
        raise ConflictError(
            f"{cloud} gave the new VM the id {node['id']}, which a VM of the ledger has"
        )
    return row


def register(cloud: str, node: dict, vm_type: str | None = None) -> Assignment:
    """Record a VM (a NODE dict) as free, for ``vm_type``; a row the ledger has already is
    kept as it is."""
    values = {"hostname": node["name"], "recipe": vm_type, "status": FREE, **HOLDER_CLEARED}
    # A pool's DELETED row taken over is no longer the pool's.
    values.update(pool=None, creation_id=None, ready_at=None, public_ips=None, private_ips=None)
    values.update(checked_at=None, check_failures=0, template=None, size=None)
    return _insert_or_revive(cloud, node["id"], values)[0]


@dataclasses.dataclass(frozen=True)
class Alone:
    """How a change is sent as a transaction of one statement (``alone_possible``,
    ``begin_alone``): writing the history entry that ``record`` (a function of the CTE of
    the changed row, built once: ``history.written_by``) makes of the bound ``entry``, in
    the same statement; for a take from a pool, only if the quota rules are still at
    ``rules_revision`` (those the assign was decided by)."""

    record: Callable
    entry: dict
    rules_revision: int | None = None


def alone_possible() -> bool:
    """Whether the session's next statement may be a transaction of its own: on
    PostgreSQL (a change with its spans and its history entry, one statement) while the
    session has begun none (nothing read or locked to hold to its end)."""
    return _one_statement() and not db.session().in_transaction()


def begin_alone() -> None:
    """Send the session's statements in autocommit until it commits (only where
    ``alone_possible``): no BEGIN and no COMMIT, each statement a transaction of its own.
    A read then needs no transaction; a change is sent with its entry (``Alone``); a use
    case that finds it needs a transaction after all commits the session first, which
    gives the connection back, and its next statement begins one."""
    db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def end_alone() -> None:
    """Leave autocommit (``begin_alone``) before a change that needs a transaction: the
    session commits, which sends nothing and gives the connection back."""
    db.session.commit()


def is_alone() -> bool:
    """Whether the session's statements are sent in autocommit (``begin_alone``)."""
    session = db.session()
    if not session.in_transaction():
        return False
    options = session.connection().get_execution_options()
    return options.get("isolation_level") == "AUTOCOMMIT"


@dataclasses.dataclass(frozen=True)
class Keeping:
    """The VMs a release keeps free, as the caller works it out from the pools and their
    overrides: of each pool the ``(pool, cloud, template)`` of ``current`` name (each of
    its clouds with its current template), those made from a current template or
    recording none (``PoolSpec.is_current``); with ``rest``, those of no pool ``named``
    (every configured pool's name). ``revision``: that of the pools' overrides
    ``current`` was worked out by (None when it names no pool)."""

    current: tuple = ()
    named: tuple = ()
    rest: bool = False
    revision: int | None = None


def release_kept(
    cloud: str, node_id: str, keeping: Keeping, record: Callable, entry: dict
) -> Row | None:
    """The live row of ``cloud`` with this node id, as ``columns_of`` reads it (with the
    pools' overrides' revision), and freed by the same statement if it is assigned,
    without a lease, and kept by ``keeping`` (while the overrides are at its revision):
    with its spans and the history entry that ``record(changed, before)`` makes (of the
    CTE of the changed row and of the assignments as they were) of the bound ``entry``.
    ``freed(row)`` says whether it was; None: no such row. Only in a session sent in
    autocommit (``begin_alone``): the statement is a transaction of its own, all or
    nothing; a row it leaves as it was goes through the release's checks as a row
    ``columns_of`` read would."""
    pools, clouds, templates = zip(*keeping.current, strict=True) if keeping.current else ((),) * 3
    parameters = {
        **entry,
        "of_cloud": cloud,
        "wanted": node_id,
        "now": clock.now(),
        "reused": sorted(set(pools)),
        "current_pools": list(pools),
        "current_clouds": list(clouds),
        "current_templates": list(templates),
        "named": list(keeping.named),
        "keeps_rest": keeping.rest,
        "overrides_revision": keeping.revision,
    }
    return db.session.execute(_release_kept_statement(record), parameters).one_or_none()


def freed(row) -> bool:
    """Whether the statement that read ``row`` freed it too (``release_kept``)."""
    return isinstance(row, Row) and bool(row._mapping.get("freed"))


def _array(name: str, column: str = "pool"):
    """A parameter of a list of values of ``column``."""
    return bindparam(name, type_=ARRAY(_ROWS.c[column].type))


@functools.lru_cache(maxsize=4)
def _release_kept_statement(record):
    """``release_kept``'s statement, built once: the same text whatever the pools, so
    that psycopg keeps it parsed and PostgreSQL prepared. Every condition of the release
    is the UPDATE's own, so that PostgreSQL checks it again on the row as it is when a
    concurrent change made it wait. The CTEs and the SELECT all see the rows as they
    were before the statement: the entry's holder and the row answered are the VM's
    before its release."""
    current = (
        func.unnest(
            _array("current_pools"),
            _array("current_clouds", "cloud"),
            _array("current_templates", "template"),
        )
        .table_valued("pool", "cloud", "template")
        .render_derived(name="current")
    )
    made_so = tuple_(_ROWS.c.pool, _ROWS.c.cloud, _ROWS.c.template).in_(select(current))
    reused = (_ROWS.c.pool == any_(_array("reused"))) & (_ROWS.c.template.is_(None) | made_so)
    rest = bindparam("keeps_rest", type_=Boolean) & (
        _ROWS.c.pool.is_(None) | (_ROWS.c.pool != all_(_array("named")))
    )
    revision = bindparam("overrides_revision", type_=BigInteger)
    # No parameter is named as a column: the keys of an UPDATE's parameters that are
    # would be set.
    this_vm = (_ROWS.c.cloud == bindparam("of_cloud"), _ROWS.c.id_vm == bindparam("wanted"))
    changed = (
        update(_ROWS)
        .where(
            *this_vm,
            _ROWS.c.status == ASSIGNED,
            _ROWS.c.expires_at.is_(None),
            reused | rest,
            revision.is_(None) | revisions.still(revisions.POOL_OVERRIDES, revision),
        )
        .values(status=FREE, updated_at=NOW, **dict.fromkeys(HOLDER_CLEARED, null()))
    )
    before = _ROWS.alias("before")
    rows, written = _respanned(changed, ("id",), lambda rows: record(rows, before))
    was_freed = rows.c.id.is_not(None).label("freed")
    return (
        select(_ROWS, revisions.current(revisions.POOL_OVERRIDES), was_freed)
        .select_from(_ROWS.outerjoin(rows, rows.c.id == _ROWS.c.id))
        .where(*this_vm, _ROWS.c.status != DELETED)
        .add_cte(*written)
    )


def _move(row_id: int, expected, alone: Alone | None = None, **values):
    """Change the row from a state in ``expected`` with ``values`` (a new ``status``: its
    span too, in the same statement on PostgreSQL); its ``(id, id_vm, pool)``, or None
    when it was in no such state (another process changed it first). With ``alone``, in
    a session sent in autocommit (``begin_alone``): with its history entry, one
    statement, all or nothing."""
    states = expected if isinstance(expected, tuple | list | frozenset | set) else (expected,)
    shape, parameters = _bound(values)
    status = values.get("status")
    one = status is not None and _one_statement()
    record = None if alone is None else alone.record
    statement = _move_statement(tuple(sorted(states)), shape, one, record)
    parameters.update(row_id=row_id, now=clock.now())
    if alone is not None:
        parameters.update(alone.entry)
    won = db.session.execute(statement, parameters).one_or_none()
    if won is not None and status is not None and not one:
        _respan([won.id], opens=status != DELETED)
    return won


@functools.lru_cache(maxsize=64)
def _move_statement(states: tuple, shape: tuple, respanned: bool, record=None):
    """``_move``'s statement, built once for each shape of change and each way of
    writing a history entry with it."""
    # One state is ``=``: an IN's list is rendered into the statement at each execution.
    status_is = _ROWS.c.status == states[0] if len(states) == 1 else _ROWS.c.status.in_(states)
    changed = (
        update(_ROWS)
        .where(_ROWS.c.id == bindparam("row_id"), status_is)
        .values(updated_at=NOW, **_setting(shape))
    )
    return _answering(changed, ("id", "id_vm", "pool"), respanned, record=record)


def _moved(row: Assignment, won) -> bool:
    db.session.refresh(row)
    return won is not None


def promote(row: Assignment, ready_at, hostname: str, public_ips, private_ips) -> bool:
    """A booting VM found running (and answering its pool's ready check, if it has one):
    free, with its addresses; whether it moved."""
    won = _move(
        row.id,
        BOOTING,
        status=FREE,
        ready_at=ready_at,
        checked_at=ready_at,
        check_failures=0,
        hostname=hostname,
        public_ips=public_ips,
        private_ips=private_ips,
    )
    return _moved(row, won)


def note_check(row: Assignment, passed: bool, now, out_after: int | None = None):
    """Record a ready check of the booting or free VM: passed, or one more failure in a
    row. A free VM whose failures reach ``out_after`` is taken out of the pool (FAULTY) by
    the same statement, which an assign cannot meet half-way. Its status afterwards, or
    None when it was neither booting nor free any more."""
    failures = 0 if passed else Assignment.check_failures + 1
    values = {"checked_at": now, "check_failures": failures, "updated_at": clock.now()}
    if not passed and out_after is not None:
        values["status"] = case(
            (
                (Assignment.status == FREE) & (Assignment.check_failures + 1 >= out_after),
                FAULTY,
            ),
            else_=Assignment.status,
        )
    moved = db.session.execute(
        update(Assignment)
        .where(Assignment.id == row.id, Assignment.status.in_([BOOTING, FREE]))
        .values(**values)
        .returning(Assignment.status)
        .execution_options(synchronize_session=False)
    ).scalar()
    if moved == FAULTY:
        _respan([row.id])
    db.session.refresh(row)
    return moved


def assign(row_id: int, user: str, vm_type: str, assigned_by=None, expires_at=None, tags=None):
    """Give the free VM to ``user``, tagged with ``tags``: its ``(id, id_vm, pool)``, or
    None when it was not free."""
    return _move(row_id, FREE, **assigned_values(user, vm_type, assigned_by, expires_at, tags))


# The columns of the row ``take_free`` gives back: what the assign answers with.
TAKEN = ("id", "id_vm", "cloud", "hostname", "public_ips", "private_ips")


def take_free(
    pool: str,
    clouds: list[str],
    user: str,
    vm_type: str,
    assigned_by: str | None = None,
    expires_at: datetime.datetime | None = None,
    templates: dict[str, str] | None = None,
    tags: dict | None = None,
    alone: Alone | None = None,
) -> Row | None:
    """Assign a free VM of the pool on one of ``clouds`` to ``user``, for ``assigned_by``,
    leased until ``expires_at`` (None: no end), tagged with ``tags``, one made from its
    cloud's current template (``templates``) first: one statement that picks and changes
    the row, so that two requests never get the same VM. The row's ``TAKEN`` columns and
    the revision of the quota rules the statement saw (``revision_seen``), or None when
    the pool has no free VM there.

    On PostgreSQL the pick skips rows another transaction holds (FOR UPDATE SKIP LOCKED),
    so concurrent requests take different VMs rather than queue for one; SQLite runs one
    writing statement at a time. The status check repeats in the UPDATE all the same.

    With ``alone`` (only where ``alone_possible``) the statement is the transaction:
    sent on the session's connection in autocommit, with no BEGIN or COMMIT, it takes the
    VM only while the quota rules are at the revision the assign was decided by, and
    writes its history entry, all or nothing. None then also when the rules moved; the
    caller commits the session, which gives the connection back.
    """
    shape, parameters = _bound(assigned_values(user, vm_type, assigned_by, expires_at, tags))
    current = sorted((templates or {}).items())
    one = _one_statement()
    record = None if alone is None else alone.record
    statement = _take_statement(len(current), shape, one, record)
    parameters.update(of_pool=pool, clouds=list(clouds), now=clock.now())
    for index, (cloud, template) in enumerate(current):
        parameters.update({f"cloud_{index}": cloud, f"template_{index}": template})
    if alone is not None:
        parameters.update(alone.entry, rules_revision=alone.rules_revision)
        begin_alone()  # the take is the transaction's first statement
    # What the assign answers with, from the statement itself: no read after.
    taken = db.session.execute(statement, parameters).one_or_none()
    if taken is not None and not one:
        _respan([taken.id])
    return taken


@functools.lru_cache(maxsize=64)
def _take_statement(templates: int, shape: tuple, respanned: bool, record=None):
    """``take_free``'s statement, built once for each number of clouds with a template,
    each shape of the values it sets, and each way of writing a history entry with it."""
    current = {bindparam(f"cloud_{i}"): bindparam(f"template_{i}") for i in range(templates)}
    # On PostgreSQL the clouds are one array: nothing is rendered into the statement's
    # text at each execution, which is the same for any number of them.
    if respanned:
        clouds = _ROWS.c.cloud == any_(bindparam("clouds", type_=ARRAY(_ROWS.c.cloud.type)))
    else:
        clouds = _ROWS.c.cloud.in_(bindparam("clouds", expanding=True))
    candidate = _free(bindparam("of_pool"), clouds, current).with_for_update(skip_locked=True)
    changed = (
        update(_ROWS)
        .where(_ROWS.c.id == candidate.scalar_subquery(), _ROWS.c.status == FREE)
        .values(updated_at=NOW, **_setting(shape))
    )
    if record is not None:
        rules = bindparam("rules_revision", type_=BigInteger)
        changed = changed.where(revisions.still(revisions.QUOTA_RULES, rules))
    # The quota rules' revision, as the statement that takes the VM saw it: an assign
    # that decided by the rules the process keeps holds only if it is theirs.
    also = (revisions.current(revisions.QUOTA_RULES),)
    return _answering(changed, TAKEN, respanned, also, record)


def set_aside(
    pool: str,
    clouds: list[str],
    request_id: int,
    count: int,
    templates: dict[str, str] | None = None,
) -> int:
    """Set aside up to ``count`` free VMs of the pool on one of ``clouds`` for the request
    ``request_id`` (RESERVED: no assign takes them), in the order an assign would take them
    (``templates``: see ``take_free``); how many were. One statement that picks and changes
    the rows: on PostgreSQL the pick skips rows another transaction holds (FOR UPDATE SKIP
    LOCKED), so that concurrent requests and assigns never take the same VM, and the status
    check repeats in the UPDATE all the same.

    The pick is a CTE that PostgreSQL computes once (MATERIALIZED): a subquery in the
    WHERE may be run again for each row, and each run would skip the rows this very
    statement has locked and lock ``count`` more.
    """
    if count <= 0:
        return 0
    picked = (
        _free(pool, clouds, templates, count)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    taken = db.session.execute(
        update(Assignment)
        .where(Assignment.id.in_(select(picked.c.id)), Assignment.status == FREE)
        .values(status=RESERVED, request_id=request_id, updated_at=clock.now())
        .returning(Assignment.id)
        .execution_options(synchronize_session=False)
    )
    taken = taken.scalars().all()
    _respan(taken)
    return len(taken)


def hand_over(
    request_id: int,
    user: str,
    assigned_by: str,
    expires_at: datetime.datetime | None,
    pool: str | None = None,
    tags: dict | None = None,
) -> list[Assignment]:
    """Assign every VM set aside for the request (of ``pool`` only, if given) to
    ``user``, for ``assigned_by``, leased until ``expires_at`` (None: no end), tagged with
    the request's ``tags``, each for its pool's vm_type, in one statement. The rows
    assigned, read afresh (none: nothing was set aside). They keep the request's id while
    held."""
    values = assigned_values(user, Assignment.pool, assigned_by, expires_at, tags)
    where = [Assignment.request_id == request_id, Assignment.status == RESERVED]
    if pool is not None:
        where.append(Assignment.pool == pool)
    taken = db.session.execute(
        update(Assignment)
        .where(*where)
        .values(updated_at=clock.now(), **values)
        .returning(Assignment.id, Assignment.pool)
        .execution_options(synchronize_session=False)
    ).all()
    _respan([row_id for row_id, _ in taken])
    if not taken:
        return []
    query = select(Assignment).where(Assignment.id.in_([row_id for row_id, _ in taken]))
    fresh = query.order_by(Assignment.id).execution_options(populate_existing=True)
    return list(db.session.scalars(fresh))


def put_back(request_id: int) -> int:
    """Free again every VM set aside for the request (cancelled, expired or failed); how
    many."""
    freed = db.session.execute(
        update(Assignment)
        .where(Assignment.request_id == request_id, Assignment.status == RESERVED)
        .values(status=FREE, request_id=None, updated_at=clock.now())
        .returning(Assignment.id)
        .execution_options(synchronize_session=False)
    )
    freed = freed.scalars().all()
    _respan(freed)
    return len(freed)


def release(row_id: int, retire: bool = False, alone: Alone | None = None):
    """Free the assigned VM: its ``(id, id_vm)``, or None when it was not assigned.

    ``retire``: the VM is to be destroyed and is kept FAULTY meanwhile, with the end of its
    lease (the worker finishes the destroy of a leased VM that outlived it). ``alone``:
    with its history entry, one statement (``_move``).
    """
    values = {"status": FREE, **HOLDER_CLEARED}
    if retire:
        values.update(status=FAULTY, expires_at=Assignment.expires_at)
    return _move(row_id, ASSIGNED, alone, **values)


def extend(row_id: int, expires_at: datetime.datetime, tags: dict | None = None) -> bool:
    """Move the end of the lease of an assigned VM, and replace its tags with ``tags``
    (None: kept as they are; empty: cleared); False if it is not assigned (any more). A
    new warning goes before the new end."""
    values = {"expires_at": expires_at, "lease_warned_at": None}
    if tags is not None:
        values["tags"] = tags or None
    won = _move(row_id, ASSIGNED, **values)
    if won is None:
        return False
    spanned = {"lease_until": expires_at}
    if tags is not None:
        spanned["tags"] = tags or None
    db.session.execute(
        update(Span)
        .where(Span.assignment_id == row_id, Span.ended_at.is_(None))
        .values(**spanned)
        .execution_options(synchronize_session=False)
    )
    return True


def mark_warned(row: Assignment, now: datetime.datetime) -> bool:
    """Note that the lease of ``row`` was warned of, unless it was released, extended or
    warned of meanwhile; whether this caller is the one to warn."""
    won = db.session.execute(
        update(Assignment)
        .where(
            Assignment.id == row.id,
            Assignment.status == ASSIGNED,
            Assignment.expires_at == row.expires_at,
            Assignment.lease_warned_at.is_(None),
        )
        .values(lease_warned_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(won)


def mark_faulty(row: Assignment, expected=None) -> bool:
    """Keep the VM from being handed out (to be destroyed, or not working): FAULTY, from
    ``expected`` (default: its state as read), its holder forgotten; whether it moved."""
    expected = row.status if expected is None else expected
    won = _move(row.id, expected, status=FAULTY, **HOLDER_CLEARED)
    return _moved(row, won)


def mark_deleted(row: Assignment, expected=None) -> bool:
    """The VM is destroyed, or gone from its cloud: DELETED, from ``expected`` (default:
    its state as read); whether it moved."""
    expected = row.status if expected is None else expected
    won = _move(row.id, expected, status=DELETED, **HOLDER_CLEARED)
    return _moved(row, won)


def forget(cloud: str, node_id: str) -> int:
    """The VM with this id was destroyed: its live row DELETED; how many rows moved."""
    moved = (
        db.session.execute(
            update(Assignment)
            .where(
                Assignment.cloud == cloud, Assignment.id_vm == node_id, Assignment.status != DELETED
            )
            .values(status=DELETED, updated_at=clock.now(), **HOLDER_CLEARED)
            .returning(Assignment.id)
            .execution_options(synchronize_session=False)
        )
        .scalars()
        .all()
    )
    _respan(moved, opens=False)
    return len(moved)
