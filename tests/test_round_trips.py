"""What an assign and a release cost in round trips to PostgreSQL: every statement, each
BEGIN and COMMIT, and the pool's ping, counted through SQLAlchemy's events while the app
answers one request of each in-process. The figures may fall; a change that makes them
grow fails here and says which round trips the request now sends."""

import pytest
import sqlalchemy
from conftest import assert_error, served, token_client
from sqlalchemy import select, text

from dispatcher import pools
from dispatcher.bookkeeping import ledger
from dispatcher.extensions import db, nothing_written
from dispatcher.models import ASSIGNED, FREE, Assignment, AuditEntry, WebhookDelivery
from dispatcher.worker import scheduler
from harness.round_trips import Capture, first_words

ASSIGN = "/api/v1/vm/action/assign"
RELEASE = "/api/v1/vm/action/release/default"
# The round trips of each, as the write path sends them now (in-process, where the token
# is checked against the database; a gunicorn worker's cache saves that one; no ping of a
# connection in steady use; the quota rules and the pools' overrides kept by the process,
# their revisions read by the statements below):
# assign: BEGIN, the token's user, the statement that takes a free VM, returns its
# columns and ends and opens its spans, the history entry, COMMIT;
# release: BEGIN, the token's user, the VM's lookup, the statement that frees the row with
# its spans, the history entry, COMMIT.
# (Before the write path was made lean: 8 and 10, with the ping, the quota rules and the
# pool's override read, the row read again after its lookup, and the spans in a
# statement of their own.)
ASSIGN_ROUND_TRIPS = 5
RELEASE_ROUND_TRIPS = 6
# By node, a VM of no pool (what benchmark (d) sends): the assign and the release each
# read the VM.
ASSIGN_BY_NODE_ROUND_TRIPS = 6
RELEASE_BY_NODE_ROUND_TRIPS = 6
# Read by no assign or release while their revisions hold.
KEPT_TABLES = ("quota_rules", "pool_overrides")


@pytest.fixture
def database_url(postgresql_url):
    return postgresql_url


@pytest.fixture
def warm(make_app):
    """A pool web of four free VMs that take released VMs back, and an agent's client
    whose token and first assign and release have warmed the process up."""
    pool = {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": 4,
        "max_total": 4,
        "release": "reuse",
    }
    app = make_app(POOLS={"web": pool})
    client = token_client(app)
    with app.app_context():
        scheduler.run_pass(pools.every())
        scheduler.run_pass(pools.every())
        engine = db.engine
    taken = client.put(ASSIGN, json={"vm_type": "web", "user": "ada"})
    assert taken.status_code == 200, taken.json
    freed = client.put(RELEASE, json={"node": taken.json["id_vm"]})
    assert freed.status_code == 200, freed.json
    return client, engine


def captured(engine, client, url: str, body: dict) -> tuple[Capture, dict]:
    """The round trips of one PUT, and its answer (a 200)."""
    with Capture(engine) as capture:
        answer = client.put(url, json=body)
    assert answer.status_code == 200, answer.json
    return capture, answer.json


def assert_within(capture: Capture, bound: int) -> None:
    """At most ``bound`` round trips, in one transaction that reads neither the quota
    rules nor the overrides and commits with one history entry, whatever else changes."""
    assert capture.round_trips() <= bound, capture.outline()
    [transaction] = capture.transactions
    for statement, _ in transaction["statements"]:
        assert not any(f"FROM {table}" in statement for table in KEPT_TABLES), capture.outline()
    assert transaction["end"] == "COMMIT", capture.outline()
    entries = [s for s, _ in transaction["statements"] if s.startswith("INSERT INTO audit")]
    assert len(entries) == 1, capture.outline()


def test_an_assign_and_a_release_send_no_more_round_trips_than_they_do(warm):
    client, engine = warm
    assign, taken = captured(engine, client, ASSIGN, {"vm_type": "web", "user": "ada"})
    release, _ = captured(engine, client, RELEASE, {"node": taken["id_vm"]})
    assert_within(assign, ASSIGN_ROUND_TRIPS)
    assert_within(release, RELEASE_ROUND_TRIPS)


# An assign from a pool where the process keeps the caller's verified token, as a
# gunicorn worker does (nothing else read or locked first): the statement that takes the
# VM, with its spans and its history entry, alone in autocommit, no BEGIN nor COMMIT.
SERVED_ASSIGN_ROUND_TRIPS = 1
# Its release back to the pool: the statement that finds the VM frees it too, with its
# spans and its history entry, in autocommit.
SERVED_RELEASE_ROUND_TRIPS = 1
FOUND_AND_FREED = (
    "WITH changed AS (UPDATE assignments SET ...), ended AS (UPDATE spans SET ...), opened AS"
    " (INSERT INTO spans ...), recorded AS (INSERT INTO audit_entries ...) SELECT ... FROM"
    " assignments"
)


def entries(engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(AuditEntry).order_by(AuditEntry.id)).mappings()
        return [dict(row) for row in rows]


def test_an_assign_and_a_release_served_with_the_token_kept_each_write_one_statement(warm):
    client, engine = warm
    served(client.application)
    taken = client.put(ASSIGN, json={"vm_type": "web", "user": "ada"})  # the token verified
    assert taken.status_code == 200, taken.json
    body = {"vm_type": "web", "user": "bob", "tags": {"ticket": "T-7"}}

    assign, answer = captured(engine, client, ASSIGN, body)

    assert assign.round_trips() <= SERVED_ASSIGN_ROUND_TRIPS, assign.outline()
    [statement] = assign.outline()
    assert statement.startswith("WITH changed AS (UPDATE assignments SET ...)"), statement
    assert "recorded AS (INSERT INTO audit_entries ...)" in statement
    # The entry is the one the transactional path writes, but for its VM and request.
    before, after = entries(engine)[-2:]
    same = {"cloud", "action", "caller", "user", "vm_type", "outcome"}
    assert {key: after[key] for key in same} == {
        "cloud": "default",
        "action": "assign",
        "caller": "tester",
        "user": "bob",
        "vm_type": "web",
        "outcome": "ok",
    }
    assert {key: before[key] for key in same - {"user"}} == {
        key: after[key] for key in same - {"user"}
    }
    assert (after["id_vm"], after["tags"]) == (answer["id_vm"], {"ticket": "T-7"})
    assert after["message"] == answer["result"] == f"Node {answer['id_vm']} assigned"
    assert after["hostname"] == answer["hostname"] and after["hostname"]
    assert after["request_id"] not in (None, before["request_id"])
    with engine.connect() as connection:
        row = connection.execute(
            select(Assignment.status, Assignment.user, Assignment.tags).where(
                Assignment.id_vm == answer["id_vm"], Assignment.cloud == "default"
            )
        ).one()
    assert tuple(row) == (ASSIGNED, "bob", {"ticket": "T-7"})

    release, freed = captured(engine, client, RELEASE, {"node": answer["id_vm"]})

    assert release.round_trips() <= SERVED_RELEASE_ROUND_TRIPS, release.outline()
    [statement] = release.outline()
    assert statement == FOUND_AND_FREED, statement
    assert "recorded AS (INSERT INTO audit_entries ...)" in statement, statement
    assert freed["result"] == f"Node {answer['id_vm']} released"
    # As the warm-up's release, in a transaction, wrote its entry: but for the VM.
    transactional, alone = [entry for entry in entries(engine) if entry["action"] == "release"]
    for key in ("cloud", "action", "caller", "outcome", "vm_type", "tags"):
        assert alone[key] == transactional[key], key
    assert (alone["id_vm"], alone["user"], alone["message"]) == (
        answer["id_vm"],
        "bob",
        freed["result"],
    )
    with engine.connect() as connection:
        status = connection.scalar(
            select(Assignment.status).where(
                Assignment.id_vm == answer["id_vm"], Assignment.cloud == "default"
            )
        )
    assert status == FREE


def test_a_served_release_of_a_leased_vm_writes_its_webhook_call_in_its_transaction(make_app):
    """A release that has more to write than its entry (the lease's webhook call) leaves
    autocommit after its lookup: the change, the entry and the call commit together."""
    app = served(
        make_app(
            LEASE_WEBHOOK_URL="http://127.0.0.1:9/hook",
            LEASE_WEBHOOK_SECRET="s" * 32,
            RELEASE_KEEPS_NODE=True,
        )
    )
    client = token_client(app)
    by_node = "/api/v1/vm/action/{}/fake_driver"
    with app.app_context():
        engine = db.engine
    body = {"node": "1", "user": "ada", "vm_type": "app", "lease": 3600}
    assert client.put(by_node.format("assign"), json=body).status_code == 200

    release, _ = captured(engine, client, by_node.format("release"), {"node": "1"})

    # The statement that finds the VM leaves it assigned: it has a lease.
    lookup, transaction = release.transactions
    [(found, _)] = lookup["statements"]
    assert lookup["alone"] and first_words(found) == FOUND_AND_FREED, found
    assert not transaction["alone"] and transaction["end"] == "COMMIT", release.outline()
    written = [first_words(statement) for statement, _ in transaction["statements"]]
    assert written[0].startswith("WITH changed AS (UPDATE assignments SET ...)"), written
    assert "recorded AS" not in written[0]
    assert sorted(written[1:]) == ["INSERT INTO audit_entries", "INSERT INTO webhook_deliveries"]
    with engine.connect() as connection:
        events = connection.scalars(select(WebhookDelivery.event)).all()
    assert events == ["released"]
    assert entries(engine)[-1]["outcome"] == "ok"


def test_an_assign_alone_that_finds_the_pool_empty_is_refused_and_recorded(warm):
    client, engine = warm
    served(client.application)
    held = [client.put(ASSIGN, json={"vm_type": "web", "user": "ada"}) for _ in range(4)]
    assert [answer.status_code for answer in held] == [200] * 4

    refused = client.put(ASSIGN, json={"vm_type": "web", "user": "ada"})

    assert_error(refused, 503, "pool web has no free VM now: 0 booting")
    assert refused.headers["Retry-After"]
    last = entries(engine)[-1]
    assert (last["action"], last["outcome"], last["user"]) == ("assign", "503", "ada")
    with engine.connect() as connection:
        free = connection.scalar(
            select(sqlalchemy.func.count()).where(
                Assignment.pool == "web", Assignment.status == FREE
            )
        )
    assert free == 0


def test_an_assign_and_a_release_by_node_send_no_more_round_trips_than_they_do(make_app):
    app = make_app(RELEASE_KEEPS_NODE=True)
    client = token_client(app)
    base = "/api/v1/vm/action/{}/fake_driver"
    body = {"node": "1", "user": "ada", "vm_type": "app"}
    with app.app_context():
        engine = db.engine
    for _ in range(2):  # the VM adopted, the process warmed up
        assert client.put(base.format("assign"), json=body).status_code == 200
        assert client.put(base.format("release"), json={"node": "1"}).status_code == 200
    assign, _ = captured(engine, client, base.format("assign"), body)
    release, _ = captured(engine, client, base.format("release"), {"node": "1"})
    assert_within(assign, ASSIGN_BY_NODE_ROUND_TRIPS)
    assert_within(release, RELEASE_BY_NODE_ROUND_TRIPS)


# A refused assign by node: its lookup, then its refusal recorded in the same transaction
# (nothing was written to roll back): BEGIN, the token's user, the VM's lookup, the
# history entry, COMMIT. (Before: a ROLLBACK, a new BEGIN and a ping besides, 8.)
REFUSED_BY_NODE_ROUND_TRIPS = 5


def test_a_refused_assign_records_its_refusal_without_a_rollback(make_app):
    app = make_app(RELEASE_KEEPS_NODE=True)
    client, other = token_client(app), token_client(app, "other")
    url = "/api/v1/vm/action/assign/fake_driver"
    body = {"node": "1", "user": "ada", "vm_type": "app"}
    with app.app_context():
        engine = db.engine
    assert client.put(url, json=body).status_code == 200  # adopted, and held
    with Capture(engine) as refused:
        answer = other.put(url, json={**body, "user": "bob"})
    assert_error(answer, 409, "node 1 is assigned to ada (app)")
    assert_within(refused, REFUSED_BY_NODE_ROUND_TRIPS)
    [transaction] = refused.transactions
    assert not [s for s, _ in transaction["statements"] if "UPDATE" in s], refused.outline()
    with app.app_context():
        [row] = ledger.rows_of("fake_driver", node_id="1")
        assert (row.status, row.user) == (ASSIGNED, "ada")
        outcomes = db.session.execute(
            select(AuditEntry.user, AuditEntry.outcome).order_by(AuditEntry.id)
        ).all()
    assert outcomes[-2:] == [("ada", "ok"), ("bob", "409")]


def test_nothing_written_tells_a_transaction_of_reads_from_one_that_wrote(make_app):
    """What a refusal's use case asks before it records the refusal without a rollback:
    reads and locks alone, yes; any write sent (a CTE's too, a savepoint, a NOTIFY) or an
    object waiting to be flushed, no; a new transaction starts afresh; a write sent in
    autocommit, committed as it ended, leaves nothing to roll back."""
    app = make_app()
    with app.app_context():
        row_id = ledger.register("fake_driver", {"id": "7", "name": "dummy-7"}).id
        db.session.commit()
        assert nothing_written()  # no transaction yet
        ledger.rows_of("fake_driver", node_id="7")
        db.session.execute(text("SELECT pg_advisory_xact_lock(42)"))
        assert nothing_written()
        db.session.execute(text("SELECT pg_notify('dispatcher_test', 'x')"))
        assert not nothing_written()  # delivered at the commit
        db.session.rollback()
        assert ledger.assign(row_id, "ada", "app") is not None  # WITH changed AS (UPDATE ...)
        assert not nothing_written()
        db.session.rollback()
        assert nothing_written()
        db.session.begin_nested()
        assert not nothing_written()  # the SAVEPOINT
        db.session.rollback()
        ledger.begin_alone()
        assert ledger.assign(row_id, "ada", "app") is not None  # committed as it ends
        assert nothing_written()
        db.session.commit()
        db.session.add(AuditEntry(cloud="fake_driver", action="assign", outcome="ok"))
        assert not nothing_written()  # to be flushed at the commit
        db.session.rollback()
        assert nothing_written()


def _pool(release: str) -> dict:
    return {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": 1,
        "max_total": 1,
        "release": release,
    }


@pytest.mark.parametrize(
    ("case", "keeps_node", "kept"),
    [
        ("reused", False, True),
        ("outdated", False, False),  # made from a template the pool no longer has
        ("destroyed", False, False),  # of a pool that destroys its VMs on release
        ("destroyed", True, False),  # RELEASE_KEEPS_NODE is for VMs of no pool
        ("no pool", True, True),  # RELEASE_KEEPS_NODE
        ("no pool", False, False),
        ("free", True, None),  # not assigned: 409
    ],
)
def test_a_served_release_frees_in_its_lookup_only_what_the_release_keeps(
    make_app, case, keeps_node, kept
):
    """Served, a release by node is one statement that finds the VM and frees it when
    the release's checks would just keep it; for every other VM that statement changes
    nothing, and the release goes on as the checks decide. The answer, the VM and the
    history entry are the same either way."""
    app = served(
        make_app(
            POOLS={"web": _pool("reuse"), "once": _pool("destroy")},
            RELEASE_KEEPS_NODE=keeps_node,
        )
    )
    client = token_client(app)
    with app.app_context():
        scheduler.run_pass(pools.every())
        scheduler.run_pass(pools.every())
        engine = db.engine
    warm_up = {"node": "2", "user": "ada", "vm_type": "app"}  # and what the process keeps
    assert client.put(f"{ASSIGN}/fake_driver", json=warm_up).status_code == 200
    release = client.put("/api/v1/vm/action/release/fake_driver", json={"node": "2"})
    assert release.status_code == 200, release.json
    if case in ("no pool", "free"):
        cloud, node = "fake_driver", "1"
        body = {"node": node, "user": "ada", "vm_type": "app"}
        taken = client.put(f"{ASSIGN}/{cloud}", json=body)
        assert taken.status_code == 200, taken.json
        if case == "free":
            released = client.put(f"/api/v1/vm/action/release/{cloud}", json={"node": node})
            assert released.status_code == 200, released.json
    else:
        cloud = "default"
        pool = "once" if case == "destroyed" else "web"
        taken = client.put(ASSIGN, json={"vm_type": pool, "user": "ada"})
        assert taken.status_code == 200, taken.json
        node = taken.json["id_vm"]
        if case == "outdated":
            with engine.begin() as connection:
                connection.execute(
                    sqlalchemy.update(Assignment)
                    .where(Assignment.id_vm == node, Assignment.cloud == cloud)
                    .values(template="made before the pool changed")
                )
    url = f"/api/v1/vm/action/release/{cloud}"

    with Capture(engine) as capture:
        answer = client.put(url, json={"node": node})

    first = first_words(capture.transactions[0]["statements"][0][0])
    assert capture.transactions[0]["alone"] and first == FOUND_AND_FREED, first
    last = entries(engine)[-1]
    assert (last["action"], last["id_vm"], last["cloud"], last["caller"]) == (
        "release",
        node,
        cloud,
        "tester",
    )
    with engine.connect() as connection:
        status = connection.scalar(
            select(Assignment.status).where(Assignment.id_vm == node, Assignment.cloud == cloud)
        )
    if kept is None:
        assert_error(answer, 409, f"node {node} is free")
        assert capture.round_trips() == 2, capture.outline()  # and the refusal's entry
        assert (last["outcome"], last["user"], status) == ("409", None, FREE)
        return
    assert answer.status_code == 200, answer.json
    vm_type = "app" if case == "no pool" else pool
    assert (last["user"], last["vm_type"], last["hostname"]) == ("ada", vm_type, f"dummy-{node}")
    if kept:
        assert capture.round_trips() == 1, capture.outline()
        assert answer.json["result"] == last["message"] == f"Node {node} released"
        assert status == FREE
    else:
        assert capture.round_trips() > 1, capture.outline()
        assert answer.json["result"] == f"Node {node} released and deleted"
        assert last["message"].startswith(f"Node {node} released")
        assert status not in (ASSIGNED, FREE)
