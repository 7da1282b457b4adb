"""The assignment row has one owner: every INSERT and UPDATE of the ``assignments`` table
comes from ``dispatcher.bookkeeping.ledger``, by the source and by the statements a tour
of every transition sends (SQLAlchemy's cursor events, on SQLite and PostgreSQL). And an
assign by vm_type is audited like an assign by node: refusals too."""

import ast
import datetime
import inspect
import re
from pathlib import Path

import pytest
import sqlalchemy
from conftest import metric, token_client
from libcloud.compute.types import NodeState

import dispatcher
from dispatcher import clouds, pools
from dispatcher.bookkeeping import ledger
from dispatcher.extensions import db
from dispatcher.models import Assignment, AuditEntry, Holding
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
# A statement that writes the table: INSERT INTO assignments, UPDATE assignments.
WRITES = re.compile(r"^\s*(INSERT\s+INTO|UPDATE)\s+\"?assignments\"?\b", re.IGNORECASE)


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
    warned of and ended; a free VM gone from its cloud retired; the reconcile's ghost,
    mismatch and recorded orphan: every write of the row from one module."""
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


@pytest.mark.parametrize("ending", ["release", "retire", "mark_faulty", "mark_deleted", "forget"])
def test_every_way_out_of_assigned_ends_the_holding_and_an_extend_moves_its_lease(make_app, ending):
    """What quotas count in VM-hours: each assign opens one holding, and whatever ends the
    assignment closes it; an extend gives it the new end."""
    app = make_app()
    lease_end = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    with app.app_context():
        row = ledger.register("fake_driver", {"id": "7", "name": "dummy-7"})
        assert ledger.assign(row.id, "alice", "app", "keeper", None) is not None
        assert ledger.extend(row.id, lease_end)
        holding = ledger.holding_of(row.id)
        assert (holding.holder, holding.pool, as_utc(holding.lease_until)) == (
            "keeper",
            "app",
            lease_end,
        )
        if ending in ("release", "retire"):
            assert ledger.release(row.id, retire=ending == "retire") is not None
        elif ending == "forget":
            assert ledger.forget("fake_driver", "7") == 1
        else:
            assert getattr(ledger, ending)(ledger.get(row.id, fresh=True))
        db.session.commit()
        assert ledger.holding_of(row.id) is None
        ended = db.session.scalars(sqlalchemy.select(Holding)).one()
        assert ended.ended_at is not None


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
                Holding(
                    assignment_id=100 + index,
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
