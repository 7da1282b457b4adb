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
# is checked against the database; a gunicorn worker's cache saves that one):
# assign: the ping, BEGIN, the token's user, the quota rules, the UPDATE that takes a free
# VM and returns its row, the span statement, the history entry, COMMIT;
# release: the ping, BEGIN, the token's user, the VM's lookup, its row again, the pool's
# override, the UPDATE, the span statement, the history entry, COMMIT.
ASSIGN_ROUND_TRIPS = 8
RELEASE_ROUND_TRIPS = 10


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


def test_an_assign_and_a_release_send_no_more_round_trips_than_they_do(warm):
    client, engine = warm
    with Capture(engine) as assign:
        taken = client.put(ASSIGN, json={"vm_type": "web", "user": "ada"})
    assert taken.status_code == 200, taken.json
    with Capture(engine) as release:
        freed = client.put(RELEASE, json={"node": taken.json["id_vm"]})
    assert freed.status_code == 200, freed.json
    assert assign.round_trips() <= ASSIGN_ROUND_TRIPS, assign.outline()
    assert release.round_trips() <= RELEASE_ROUND_TRIPS, release.outline()
    # Whatever else changes: one transaction each, which the history entry shares.
    for captured in (assign, release):
        [transaction] = captured.transactions
        assert transaction["end"] == "COMMIT", captured.outline()
        entries = [s for s, _ in transaction["statements"] if s.startswith("INSERT INTO audit")]
        assert len(entries) == 1, captured.outline()
