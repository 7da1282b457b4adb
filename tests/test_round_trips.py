"""What an assign and a release cost in round trips to PostgreSQL: every statement, each
BEGIN and COMMIT, and the pool's ping, counted through SQLAlchemy's events while the app
answers one request of each in-process. The figures may fall; a change that makes them
grow fails here and says which round trips the request now sends."""

import pytest
from conftest import token_client

from dispatcher import pools
from dispatcher.extensions import db
from dispatcher.worker import scheduler
from harness.round_trips import Capture

ASSIGN = "/api/v1/vm/action/assign"
RELEASE = "/api/v1/vm/action/release/default"
# The round trips of each, as the write path sends them now (in-process, where the token
# is checked against the database; a gunicorn worker's cache saves that one; no ping of a
# connection in steady use):
# assign: BEGIN, the token's user, the quota rules, the statement that takes a free VM,
# returns its columns and ends and opens its spans, the history entry, COMMIT;
# release: BEGIN, the token's user, the VM's lookup, the pool's override, the statement
# that frees the row with its spans, the history entry, COMMIT.
# (Before the write path was made lean: 8 and 10, with the ping, the row read again after
# its lookup, and the spans in a statement of their own.)
ASSIGN_ROUND_TRIPS = 6
RELEASE_ROUND_TRIPS = 7
# By node, a VM of no pool (what benchmark (d) sends): the assign reads the VM and the
# quota rules, the release the VM only (no pool, no override).
ASSIGN_BY_NODE_ROUND_TRIPS = 7
RELEASE_BY_NODE_ROUND_TRIPS = 6


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
    """At most ``bound`` round trips, in one transaction that commits with one history
    entry, whatever else changes."""
    assert capture.round_trips() <= bound, capture.outline()
    [transaction] = capture.transactions
    assert transaction["end"] == "COMMIT", capture.outline()
    entries = [s for s, _ in transaction["statements"] if s.startswith("INSERT INTO audit")]
    assert len(entries) == 1, capture.outline()


def test_an_assign_and_a_release_send_no_more_round_trips_than_they_do(warm):
    client, engine = warm
    assign, taken = captured(engine, client, ASSIGN, {"vm_type": "web", "user": "ada"})
    release, _ = captured(engine, client, RELEASE, {"node": taken["id_vm"]})
    assert_within(assign, ASSIGN_ROUND_TRIPS)
    assert_within(release, RELEASE_ROUND_TRIPS)


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
