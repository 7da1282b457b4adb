"""When the app pings PostgreSQL before using a pooled connection: only after the
connection has been idle in the pool for more than DATABASE_PING_IDLE_SECONDS
(extensions.ping_when_idle), not at every request. The app answers in-process through
the test client with a token; the clock is moved with time-machine, never waited for.

The pooled connections of each test's app carry an application_name of their own, so
that a test kills the server side of its own connections only, never another test's."""

import datetime
import uuid
from dataclasses import dataclass, field

import pytest
import sqlalchemy
import time_machine
from conftest import assert_error, token_client

from dispatcher.extensions import db
from harness.round_trips import Capture

LISTING = "/api/v1/nodes/fake_driver"
START = datetime.datetime(2026, 5, 4, 9, 0, tzinfo=datetime.UTC)

BACKENDS = sqlalchemy.text(
    "SELECT pid FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = :name"
)
# Waits (up to 3 s) until each backend has ended, so that the app's next use meets a
# closed connection, not one still closing.
TERMINATE = sqlalchemy.text(
    "SELECT pg_terminate_backend(pid, 3000) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = :name "
    "AND pid <> pg_backend_pid()"
)


@pytest.fixture
def database_url(postgresql_url):
    return postgresql_url


@dataclass
class Served:
    """An app on PostgreSQL, an agent's client of it and its engine."""

    client: object
    engine: sqlalchemy.Engine
    idle: float | None
    name: str
    server: sqlalchemy.Engine
    # The pings the app's engine sent to the server, counted where they are sent.
    sent: list = field(default_factory=list)

    def backends(self) -> set[int]:
        """The server processes of the app's pooled connections."""
        with self.server.connect() as conn:
            return set(conn.execute(BACKENDS, {"name": self.name}).scalars())

    def kill(self) -> int:
        """End the server side of every pooled connection of the app (an administrator's
        pg_terminate_backend, or a restart of PostgreSQL as the app sees it)."""
        with self.server.connect() as conn:
            return len(conn.execute(TERMINATE, {"name": self.name}).scalars().all())


@pytest.fixture
def clock():
    """The dispatcher's clock stopped at START; a test moves it on."""
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def serve(make_app, postgresql_engine, clock, monkeypatch):
    """Make the app with ``settings`` on the defaults, its connections named for the test
    alone, and its agent's client, whose first request has opened the pool's connection."""

    def make(**settings) -> Served:
        name = f"dispatcher-ping-test-{uuid.uuid4().hex[:12]}"
        app = make_app(
            SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"application_name": name}}, **settings
        )
        client = token_client(app)
        with app.app_context():
            engine = db.engine
        served = Served(
            client, engine, app.config["DATABASE_PING_IDLE_SECONDS"], name, postgresql_engine
        )
        ping = engine.dialect.do_ping

        def counted(dbapi_connection):
            served.sent.append(dbapi_connection)
            return ping(dbapi_connection)

        monkeypatch.setattr(engine.dialect, "do_ping", counted)
        assert_listing(client)
        return served

    return make


def assert_listing(client) -> None:
    """The listing answers 200 with the Dummy cloud's two nodes."""
    response = client.get(LISTING)
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert [node["name"] for node in body["nodes"]] == ["dummy-1", "dummy-2"]


def test_a_connection_in_steady_use_is_not_pinged(serve, clock):
    """Requests one after another, a second apart, each take the connection the one before
    gave back and use it as it is: no ping before any of them (pool_pre_ping sent one
    before each)."""
    served = serve()
    assert served.idle == 10  # the default
    with Capture(served.engine) as captured:
        for _ in range(5):
            clock.shift(1)
            assert_listing(served.client)
    assert captured.pings == 0, captured.outline()
    assert served.sent == []
    # Each request one transaction of its own, on the one connection.
    assert len(captured.transactions) == 5, captured.outline()
    assert len(served.backends()) == 1


def test_after_more_than_the_idle_limit_one_request_pings(serve, clock):
    """A connection idle just the limit is used as it is; idle longer, the next request
    pings it first, once, and the requests right after it do not."""
    served = serve()
    clock.shift(served.idle)
    with Capture(served.engine) as at_the_limit:
        assert_listing(served.client)
    assert at_the_limit.pings == 0, at_the_limit.outline()

    clock.shift(served.idle + 1)
    with Capture(served.engine) as after_idle:
        assert_listing(served.client)
    with Capture(served.engine) as right_after:
        for _ in range(3):
            assert_listing(served.client)
    assert after_idle.pings == 1, after_idle.outline()
    assert after_idle.outline()[0] == "ping x1"
    assert right_after.pings == 0, right_after.outline()
    assert len(served.sent) == 1


def test_a_connection_that_died_while_idle_is_replaced_without_an_error(serve, clock):
    """The server side of the pooled connection ends while the app is idle (PostgreSQL
    restarted, an administrator's pg_terminate_backend): the next request, past the idle
    limit, finds it dead by its ping and answers 200 on a new connection."""
    served = serve()
    [dead] = served.backends()
    assert served.kill() == 1
    clock.shift(served.idle + 1)
    assert_listing(served.client)
    assert len(served.sent) == 1  # the ping that found it dead
    assert served.backends() - {dead}, "no new connection"
    assert dead not in served.backends()


def test_a_connection_that_died_moments_after_use_fails_one_request(serve, clock):
    """The trade-off of not pinging a connection busy a moment ago: the one request that
    meets it dead answers 503 in the envelope (not a 500), and SQLAlchemy then drops the
    pool's connections, so the next request answers 200 on a new one."""
    served = serve()
    [dead] = served.backends()
    assert served.kill() == 1
    clock.shift(1)
    assert_error(served.client.get(LISTING), 503, "Database unavailable: try again later")
    assert served.sent == []
    clock.shift(1)
    assert_listing(served.client)
    assert served.backends() and dead not in served.backends()


def test_without_an_idle_limit_nothing_pings(serve, clock):
    """DATABASE_PING_IDLE_SECONDS = None: nothing listens for a checkout, no ping even
    after an hour idle, so a connection that died meanwhile fails its request (503)
    once."""
    served = serve(DATABASE_PING_IDLE_SECONDS=None)
    assert not served.engine.pool.dispatch.checkout
    clock.shift(3600)
    with Capture(served.engine) as captured:
        assert_listing(served.client)
    assert captured.pings == 0, captured.outline()
    assert served.sent == []

    assert served.kill() == 1
    clock.shift(3600)
    assert_error(served.client.get(LISTING), 503, "Database unavailable: try again later")
    assert served.sent == []
    assert_listing(served.client)
