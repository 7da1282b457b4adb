"""The assignment row has one owner: every INSERT and UPDATE of the ``assignments`` table
comes from ``dispatcher.bookkeeping.ledger``, by the source and by the statements a tour
of every transition sends (SQLAlchemy's cursor events, on SQLite and PostgreSQL). And an
assign by vm_type is audited like an assign by node: refusals too."""

import ast
import datetime
import inspect
import re
import threading
from pathlib import Path

import pytest
import sqlalchemy
from conftest import metric, token_client
from libcloud.compute.types import NodeState

import dispatcher
from dispatcher import clouds, pools
from dispatcher.bookkeeping import ledger
from dispatcher.extensions import db
from dispatcher.models import (
    ASSIGNED,
    FAULTY,
    FREE,
    RESERVED,
    STATUS_NAMES,
    Assignment,
    AuditEntry,
    Span,
)
from dispatcher.serializers import as_utc
from dispatcher.worker import lease_expiry, pool_pass

PACKAGE = Path(dispatcher.__file__).parent
OWNER = "dispatcher.bookkeeping.ledger"
ASSIGN = "/api/v1/vm/action/assign"
POOL = {
    "web": {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": 1,
        "max_total": 2,
    }
}
# A statement that writes the table: INSERT INTO assignments, UPDATE assignments, either
# after a WITH clause or as a CTE of its own (a change with its spans, on PostgreSQL).
WRITES = re.compile(
    r"^\s*(?:WITH\b.*\)\s*|WITH\s+\w+\s+AS\s*\(\s*)?(INSERT\s+INTO|UPDATE)\s+\"?assignments\"?\b",
    re.IGNORECASE | re.DOTALL,
)


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


def _writes_in_source(path: Path) -> list[str]:
    """The writes of Assignment a module's source makes: update(Assignment),
    insert(Assignment), Assignment(...) made to be added."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id == "Assignment":
            found.append(f"Assignment(...) line {node.lineno}")
        elif node.func.id in {"update", "insert"} and any(
            isinstance(arg, ast.Name) and arg.id == "Assignment" for arg in node.args
        ):
            found.append(f"{node.func.id}(Assignment) line {node.lineno}")
    return found


def test_only_the_ledger_writes_the_row_in_the_source():
    writers = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        found = _writes_in_source(path)
        if found:
            writers[str(path.relative_to(PACKAGE.parent))] = found
    assert list(writers) == ["dispatcher/bookkeeping/ledger.py"], writers


def _writer() -> tuple[str, str]:
    """The innermost module of the dispatcher on the stack, and its outermost function
    there (for the ledger, the transition asked for)."""
    module, function = None, None
    for frame in inspect.stack(context=0):
        name = frame.frame.f_globals.get("__name__", "")
        if module is None:
            if name.startswith("dispatcher.") and not name.startswith("dispatcher.extensions"):
                module, function = name, frame.function
        elif name == module:
            function = frame.function
        else:
            break
    return module, function


def test_every_write_of_a_tour_of_the_transitions_comes_from_the_ledger(make_app):
    """Start, assign, extend, release, stop; a pool filled, promoted, taken from, its lease
    warned of and ended; its VMs set aside for a request, put back, set aside again and
    handed over; a free VM gone from its cloud retired; the reconcile's ghost, mismatch and
    recorded orphan: every write of the row from one module."""
    app = make_app(POOLS=POOL, LEASE_WARNING_SECONDS=3600)
    client = token_client(app)
    admin = token_client(app, "boss", roles=("admin",))
    writers: dict[str, set[str]] = {}

    def listen(conn, cursor, statement, parameters, context, executemany):
        if WRITES.match(statement):
            module, function = _writer()
            if module is not None:  # None: the test's own write, below
                writers.setdefault(module, set()).add(function)

    with app.app_context():
        engine = db.engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", listen)
    try:
        body = {"name": "a", "image": "1", "size": "1", "vm_type": "app"}
        started = client.post("/api/v1/vm/start/fake_driver", json=body).json["nodes"]["id"]
        who = {"user": "zeppolo", "vm_type": "app"}
        assert client.put(f"{ASSIGN}/fake_driver", json={"node": started, **who}).status_code == 200
        extended = client.put(
            "/api/v1/vm/action/extend/fake_driver", json={"node": started, "lease": 60}
        )
        assert extended.status_code == 200
        released = client.put("/api/v1/vm/action/release/fake_driver", json={"node": started})
        assert released.status_code == 200
        assert client.put(f"{ASSIGN}/fake_driver", json={"node": "1", **who}).status_code == 200
        stopped = client.put("/api/v1/vm/stop/fake_driver", json={"node": "1", "force": True})
        assert stopped.status_code == 200

        with app.app_context():
            pool_pass.run(pools.every())  # made
            pool_pass.run(pools.every())  # running: free
        taken = client.put(ASSIGN, json={"user": "ada", "vm_type": "web", "lease": 60})
        assert taken.status_code == 200
        with app.app_context():
            assert lease_expiry.run().warned == 1
            db.session.execute(
                sqlalchemy.update(Assignment)
                .where(Assignment.id == taken.json["id"])
                .values(expires_at=datetime.datetime.now(datetime.UTC))
            )  # the lease ends, as time would have it (the test's own write)
            db.session.commit()
            assert lease_expiry.run().released == 1
            pool_pass.run(pools.every())  # a new VM for the pool
            pool_pass.run(pools.every())  # free
            # The free VM set aside for a queued request, put back, set aside for another,
            # handed over, and released.
            assert ledger.set_aside("web", ["default"], 41, 2) == 1
            assert ledger.put_back(41) == 1
            assert ledger.set_aside("web", ["default"], 42, 1) == 1
            [handed] = ledger.hand_over(42, "ada", "tester", None)
            assert ledger.release(handed.id) is not None
            db.session.commit()
            driver = clouds.get("default").driver
            free = db.session.scalar(
                sqlalchemy.select(Assignment.id_vm).where(Assignment.status == 1)
            )
            for node in driver.list_nodes():
                if str(node.id) == free:
                    driver.destroy_node(node)  # gone behind the ledger's back
            assert pool_pass.run(pools.every())[0].destroyed == 1

        # The Dummy's own nodes recorded free; then one gone (a ghost), one stopped (a
        # mismatch) behind the ledger's back.
        synced = app.test_cli_runner().invoke(args=["ledger-sync", "--cloud", "default"])
        assert synced.exit_code == 0
        with app.app_context():
            gone, stopped = [n for n in driver.list_nodes() if str(n.id) in ("1", "2")]
            driver.destroy_node(gone)
            stopped.state = NodeState.STOPPED
        applied = admin.post("/api/v1/reconcile/default", json={"apply": True}).json
        assert [found["fix"] for found in applied["ghosts"]] == ["marked DELETED"]
        assert [found["fix"] for found in applied["mismatches"]] == ["marked FAULTY"]
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", listen)
    assert set(writers) == {OWNER}, writers
    # The tour went through every transition.
    assert writers[OWNER] >= {
        "register",
        "assign",
        "extend",
        "release",
        "forget",
        "add_booting",
        "promote",
        "take_free",
        "set_aside",
        "put_back",
        "hand_over",
        "mark_warned",
        "mark_faulty",
        "mark_deleted",
    }


def _assign_entries(app) -> list[tuple]:
    with app.app_context():
        found = db.session.scalars(
            sqlalchemy.select(AuditEntry)
            .where(AuditEntry.action == "assign")
            .order_by(AuditEntry.id)
        )
        return [
            (entry.cloud, entry.user, entry.vm_type, entry.outcome, entry.message)
            for entry in found
        ]


def test_refused_assigns_by_type_are_in_the_history_and_counted(make_app):
    """A 404 (no pool serves the vm_type) and a 503 (the pool has no free VM) leave a
    history row with their outcome, counted by outcome, as an assign by node does."""
    app = make_app(POOLS={"web": {**POOL["web"], "min_ready": 0}})
    client = token_client(app)
    before = {
        outcome: metric(
            "dispatcher_assignments_total", cloud="default", action="assign", outcome=outcome
        )
        for outcome in ("404", "503", "ok")
    }
    unknown = client.put(ASSIGN, json={"user": "ada", "vm_type": "nowhere"})
    assert unknown.status_code == 404
    empty = client.put(ASSIGN, json={"user": "ada", "vm_type": "web"})
    assert empty.status_code == 503
    dry = client.put(ASSIGN, json={"user": "ada", "vm_type": "web", "emulate": True})
    assert dry.status_code == 503  # a dry run: neither recorded nor counted
    assert _assign_entries(app) == [
        ("default", "ada", "nowhere", "404", unknown.json["message"]),
        ("default", "ada", "web", "503", empty.json["message"]),
    ]
    after = {
        outcome: metric(
            "dispatcher_assignments_total", cloud="default", action="assign", outcome=outcome
        )
        for outcome in before
    }
    assert {outcome: after[outcome] - before[outcome] for outcome in before} == {
        "404": 1,
        "503": 1,
        "ok": 0,
    }
    history = client.get("/api/v1/vm/history?action=assign").json["history"]
    assert [(entry["vm_type"], entry["outcome"]) for entry in history] == [
        ("web", "503"),
        ("nowhere", "404"),
    ]


def test_a_refusal_on_a_named_cloud_is_recorded_there(make_app):
    """An assign by type that names a cloud the pool does not use: 404, in that cloud's
    history."""
    app = make_app(POOLS=POOL)
    client = token_client(app)
    refused = client.put(f"{ASSIGN}/fake_driver", json={"user": "ada", "vm_type": "web"})
    assert refused.status_code == 404
    assert refused.json["message"] == "pool web keeps no VMs on cloud fake_driver"
    assert _assign_entries(app) == [("fake_driver", "ada", "web", "404", refused.json["message"])]


def spans_of(row_id):
    """The row's spans, oldest first: (state, user, holder, tags, open)."""
    found = db.session.scalars(
        sqlalchemy.select(Span).where(Span.assignment_id == row_id).order_by(Span.id)
    )
    return [
        (STATUS_NAMES[span.status], span.user, span.holder, span.tags, span.ended_at is None)
        for span in found
    ]


@pytest.mark.parametrize(
    ("ending", "after"),
    [
        ("release", "FREE"),
        ("retire", "FAULTY"),
        ("mark_faulty", "FAULTY"),
        ("mark_deleted", None),
        ("forget", None),
    ],
)
def test_every_way_out_of_assigned_ends_its_span_and_an_extend_moves_its_lease(
    make_app, ending, after
):
    """Each change of state ends the span open and opens one in the new state (none once
    deleted); an extend gives the assigned span the new end of its lease and its tags."""
    app = make_app()
    lease_end = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    with app.app_context():
        row = ledger.register("fake_driver", {"id": "7", "name": "dummy-7"})
        assert ledger.assign(row.id, "alice", "app", "keeper", None, {"p": "a"}) is not None
        assert ledger.extend(row.id, lease_end, {"p": "b"})
        span = ledger.open_span(row.id)
        assert (span.holder, span.user, span.vm_type, span.pool) == ("keeper", "alice", "app", None)
        assert (as_utc(span.lease_until), span.tags) == (lease_end, {"p": "b"})
        if ending in ("release", "retire"):
            assert ledger.release(row.id, retire=ending == "retire") is not None
        elif ending == "forget":
            assert ledger.forget("fake_driver", "7") == 1
        else:
            assert getattr(ledger, ending)(ledger.get(row.id, fresh=True))
        db.session.commit()
        assert spans_of(row.id) == [
            ("FREE", None, None, None, False),
            ("ASSIGNED", "alice", "keeper", {"p": "b"}, False),
            *([(after, None, None, None, True)] if after else []),
        ]


def test_the_seconds_held_in_a_period_are_summed_by_the_database(make_app):
    """Every kind of holding against a period of an hour ending at NOW: ended before it,
    across its start, within it; held with a lease ending later or already past, or
    without one; another caller's, and one left out."""
    app = make_app()
    now = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    since = now - datetime.timedelta(hours=1)

    def at(minutes):
        return now + datetime.timedelta(minutes=minutes) if minutes is not None else None

    holdings = [
        # (holder, started, ended, lease_until) in minutes from NOW; what it counts
        ("ada", -120, -70, None),  # 0: ended before the period
        ("ada", -90, -30, None),  # 30: from the period's start to its end
        ("ada", -20, -5, None),  # 15
        ("ada", -10, None, 30),  # 40: held, its whole lease
        ("ada", -50, None, -5),  # 50: held past its lease: until now
        ("ada", -15, None, None),  # 15: held without a lease
        ("bob", -30, None, None),  # another caller's
    ]
    with app.app_context():
        for index, (holder, started, ended, until) in enumerate(holdings):
            db.session.add(
                Span(
                    assignment_id=100 + index,
                    cloud="fake_driver",
                    status=ASSIGNED,
                    holder=holder,
                    pool="web",
                    started_at=at(started),
                    ended_at=at(ended),
                    lease_until=at(until),
                )
            )
        db.session.commit()
        assert ledger.held_seconds(["ada"], since, now) == (30 + 15 + 40 + 50 + 15) * 60
        assert ledger.held_seconds(["ada"], since, now, leaving_out=103) == 110 * 60
        assert ledger.held_seconds(["ada", "bob"], since, now) == 180 * 60
        assert ledger.held_seconds(None, since, now) == 180 * 60
        assert ledger.held_seconds(["ada"], since, now, pool="gpu") == 0


# -- VMs set aside for a queued request -------------------------------------------------


def _free_vms(pool: str, cloud: str, count: int, first: int = 1) -> list[int]:
    """``count`` free VMs of the pool on ``cloud``, made and promoted as a pass would."""
    made = []
    for number in range(first, first + count):
        node = {"id": f"{pool}-{cloud}-{number}", "name": f"{pool}-{number}"}
        row = ledger.add_booting(pool, cloud, node, f"c{number}")
        assert ledger.promote(row, row.created_at, node["name"], [], [])
        made.append(row.id)
    db.session.commit()
    return made


def _states(row_ids) -> list[tuple]:
    rows = db.session.scalars(
        sqlalchemy.select(Assignment)
        .where(Assignment.id.in_(list(row_ids)))
        .order_by(Assignment.id)
        .execution_options(populate_existing=True)
    )
    return [(row.status, row.request_id) for row in rows]


def test_set_aside_takes_only_free_vms_of_the_pool_and_clouds_at_most_count(make_app):
    """Free VMs of the pool on the clouds named, no more than asked, the longest free first;
    never a VM of another pool or cloud, nor one assigned, faulty or set aside already."""
    app = make_app()
    with app.app_context():
        web = _free_vms("web", "default", 4)
        elsewhere = _free_vms("web", "fake_driver", 2)
        other_pool = _free_vms("db", "default", 2)
        assert ledger.assign(web[0], "ada", "web") is not None
        assert ledger.mark_faulty(ledger.get(web[1]))
        db.session.commit()

        assert ledger.set_aside("web", ["default"], 7, 5) == 2  # the two left free
        assert ledger.set_aside("web", ["default"], 8, 3) == 0  # none left
        assert ledger.set_aside("web", ["fake_driver"], 8, 1) == 1
        assert ledger.set_aside("web", ["fake_driver"], 8, 0) == 0
        db.session.commit()

        assert _states(web) == [(ASSIGNED, None), (FAULTY, None), (RESERVED, 7), (RESERVED, 7)]
        assert _states(elsewhere) == [(RESERVED, 8), (FREE, None)]
        assert _states(other_pool) == [(FREE, None), (FREE, None)]
        assert ledger.set_aside_counts(7) == {"web": 2}
        assert ledger.set_aside_counts(8) == {"web": 1}
        assert ledger.set_aside_counts(9) == {}
        totals = ledger.pool_totals("web")
        assert totals == {"booting": 0, "free": 1, "reserved": 3, "assigned": 1, "faulty": 1}
        assert ledger.pool_counts("web")["default"]["reserved"] == 2


def test_set_aside_takes_a_current_template_first(make_app):
    """As an assign does: a VM made from its cloud's current template before an outdated
    one, however long that one has been free."""
    app = make_app()
    with app.app_context():
        old, new = _free_vms("web", "default", 2)
        for row_id, template in ((old, "t-old"), (new, "t-new")):
            db.session.get(Assignment, row_id).template = template
        db.session.commit()
        assert ledger.set_aside("web", ["default"], 3, 1, {"default": "t-new"}) == 1
        db.session.commit()
        assert _states([old, new]) == [(FREE, None), (RESERVED, 3)]


def test_an_assign_by_type_never_takes_a_vm_set_aside(make_app):
    app = make_app()
    with app.app_context():
        first, second = _free_vms("web", "default", 2)
        assert ledger.set_aside("web", ["default"], 5, 1) == 1
        db.session.commit()
        taken = ledger.take_free("web", ["default"], "ada", "web")
        assert taken is not None and taken.id == second
        assert ledger.take_free("web", ["default"], "bob", "web") is None
        assert ledger.assign(first, "bob", "web") is None  # nor by node
        assert ledger.peek_free("web", ["default"]) is None
        db.session.commit()
        assert _states([first]) == [(RESERVED, 5)]


def test_hand_over_assigns_every_vm_of_the_request_at_once_with_their_spans(make_app):
    """Every VM set aside for the request, of any pool, assigned to its user for the caller
    with its lease, each for its pool's vm_type, with a holding; the request's id stays
    while they are held, and goes with their release."""
    app = make_app()
    lease_end = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    with app.app_context():
        web = _free_vms("web", "default", 3)
        db_vm = _free_vms("db", "default", 1)
        assert ledger.set_aside("web", ["default"], 11, 2) == 2
        assert ledger.set_aside("db", ["default"], 11, 1) == 1
        assert ledger.set_aside("web", ["default"], 12, 1) == 1
        db.session.commit()

        handed = ledger.hand_over(11, "ada", "keeper", lease_end)
        db.session.commit()

        assert [row.id for row in handed] == [*web[:2], *db_vm]
        assert [
            (row.status, row.user, row.recipe, row.assigned_by, as_utc(row.expires_at))
            for row in handed
        ] == [
            (ASSIGNED, "ada", "web", "keeper", lease_end),
            (ASSIGNED, "ada", "web", "keeper", lease_end),
            (ASSIGNED, "ada", "db", "keeper", lease_end),
        ]
        assert all(row.request_id == 11 and row.assigned_at is not None for row in handed)
        spans = [ledger.open_span(row.id) for row in handed]
        assert [(h.holder, h.pool, as_utc(h.lease_until)) for h in spans] == [
            ("keeper", "web", lease_end),
            ("keeper", "web", lease_end),
            ("keeper", "db", lease_end),
        ]
        assert ledger.set_aside_counts(11) == {}
        assert [row.id for row in ledger.held_by_request(11)] == [row.id for row in handed]
        assert ledger.held_by_request(12) == []
        assert _states([web[2]]) == [(RESERVED, 12)]  # another request's: left alone
        assert ledger.hand_over(11, "ada", "keeper", None) == []  # nothing set aside now

        assert ledger.release(handed[0].id) is not None
        db.session.commit()
        assert _states([handed[0].id]) == [(FREE, None)]
        assert [row.id for row in ledger.held_by_request(11)] == [web[1], *db_vm]


def test_put_back_frees_the_vms_of_the_request_only(make_app):
    app = make_app()
    with app.app_context():
        web = _free_vms("web", "default", 3)
        assert ledger.set_aside("web", ["default"], 21, 2) == 2
        assert ledger.set_aside("web", ["default"], 22, 1) == 1
        db.session.commit()
        assert ledger.put_back(21) == 2
        assert ledger.put_back(21) == 0
        db.session.commit()
        assert _states(web) == [(FREE, None), (FREE, None), (RESERVED, 22)]
        assert ledger.pool_totals("web")["reserved"] == 1
        # Handed over: no longer the request's to put back.
        assert len(ledger.hand_over(22, "ada", "keeper", None)) == 1
        assert ledger.put_back(22) == 0
        db.session.commit()
        assert _states(web[2:]) == [(ASSIGNED, 22)]


@pytest.mark.parametrize("ending", ["mark_faulty", "mark_deleted", "forget"])
def test_a_vm_set_aside_that_ends_is_no_longer_the_requests(make_app, ending):
    """Retired by the pass (gone from its cloud), marked a ghost by the reconcile, or
    destroyed: out of the request, which a hand over then misses."""
    app = make_app()
    with app.app_context():
        kept, ended = _free_vms("web", "default", 2)
        assert ledger.set_aside("web", ["default"], 31, 2) == 2
        db.session.commit()
        row = ledger.get(ended, fresh=True)
        if ending == "forget":
            assert ledger.forget("default", row.id_vm) == 1
        else:
            assert getattr(ledger, ending)(row)
        db.session.commit()
        assert ledger.get(ended, fresh=True).request_id is None
        assert ledger.set_aside_counts(31) == {"web": 1}
        assert [row.id for row in ledger.hand_over(31, "ada", "keeper", None)] == [kept]
        db.session.commit()
        span = ledger.open_span(ended)
        assert (span.status if span else None) == (FAULTY if ending == "mark_faulty" else None)


def test_two_requests_set_aside_at_once_never_take_one_vm_twice(make_app, database_url):
    """Ten free VMs, six asked for by each of two requests at the same moment, both
    transactions open together: each VM set aside once, six for one and four for the
    other (PostgreSQL's FOR UPDATE SKIP LOCKED: the second skips what the first holds
    rather than waiting for it)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writing transaction at a time")
    app = make_app()
    with app.app_context():
        made = _free_vms("web", "default", 10)
    both_done = threading.Barrier(2, timeout=20)
    took = {}

    def set_aside(request_id):
        with app.app_context():
            took[request_id] = ledger.set_aside("web", ["default"], request_id, 6)
            both_done.wait()  # both transactions open and holding their rows
            db.session.commit()

    threads = [threading.Thread(target=set_aside, args=(number,)) for number in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(took.values()) == [4, 6]
    with app.app_context():
        states = _states(made)
        assert all(status == RESERVED for status, _ in states)
        assert sorted(sum(1 for _, req in states if req == number) for number in (1, 2)) == [4, 6]
        assert ledger.pool_totals("web")["reserved"] == 10


def test_a_change_of_state_and_its_spans_are_one_statement_on_postgresql(make_app):
    """What spans add to an assign and a delete: nothing on PostgreSQL, where the row's
    UPDATE, the end of its open span and the opening of the next are the CTEs of one
    statement; two statements on SQLite. A VM deleted opens none."""
    app = make_app()
    sent = []

    def count(conn, cursor, statement, *args):
        sent.append(statement.split()[0].upper())

    with app.app_context():
        row_id = ledger.register("fake_driver", {"id": "7", "name": "dummy-7"}).id
        db.session.commit()
        sqlalchemy.event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert ledger.assign(row_id, "ada", "app", "keeper") is not None
            fresh = ledger.get(row_id, fresh=True)
            assigned, sent[:] = list(sent), []
            assert ledger.mark_deleted(fresh)
            deleted = list(sent)
        finally:
            sqlalchemy.event.remove(db.engine, "before_cursor_execute", count)
        db.session.commit()
        assert spans_of(row_id) == [
            ("FREE", None, None, None, False),
            ("ASSIGNED", "ada", "keeper", None, False),
        ]
        on_postgresql = db.engine.dialect.name == "postgresql"
    # The row's UPDATE, then the span's.
    assert assigned[:-1] == (["WITH"] if on_postgresql else ["UPDATE", "UPDATE", "INSERT"])
    assert assigned[-1] == "SELECT"  # the row read afresh
    if on_postgresql:
        assert deleted[0] == "WITH" and deleted[1:] in ([], ["SELECT"])
    else:
        assert deleted[:2] == ["UPDATE", "UPDATE"] and "INSERT" not in deleted
