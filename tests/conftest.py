"""Fixtures: the app on a temporary SQLite file, its test client, and loopback clouds."""

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy
from cistern_server import CisternServer
from helpers import (
    ADMIN_PASSWORD,
    CHEAP_PASSWORD_HASH,
    ENVIRONMENT,
    PASSWORD_SALT,
    SECRET_KEY,
    Server,
)
from helpers import prepare_database as prepare_database  # for the modules that import it from here
from helpers import settings_file as settings_file  # for the modules that import it from here
from prometheus_client import REGISTRY

from dispatcher import auth, create_app
from dispatcher.auth import token_check
from dispatcher.config import DUMMY_FARM
from dispatcher.errors import NotFoundError
from dispatcher.extensions import db
from harness.ec2_cloud import Ec2Cloud
from harness.webhook_receiver import Receiver

# The keys of an ASSIGNMENT, Cistern's row shape (serializers.assignment_to_dict).
ASSIGNMENT_KEYS = {
    "id",
    "id_vm",
    "hostname",
    "cloud",
    "recipe",
    "recipe_id",
    "user",
    "status",
    "status_desc",
}
# The keys of a NODE (serializers.node_to_dict).
NODE_KEYS = {
    "name",
    "uuid",
    "id",
    "provider",
    "public_ips",
    "private_ips",
    "cloud_type",
    "state",
    "extra",
}

# The keys of the error envelope.
ERROR_KEYS = {"status", "status_code", "status_short_message", "status_long_message", "message"}


def assert_error(response, status: int, message: str, prefix: bool = False) -> dict:
    """``response`` (of the test client) is the error envelope of ``status`` saying
    ``message`` (or, with ``prefix``, beginning with it); returns its body."""
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == ERROR_KEYS
    assert body["status"] == "error"
    assert body["status_code"] == status
    if prefix:
        assert body["message"].startswith(message), body["message"]
    else:
        assert body["message"] == message
    return body


def metric(name: str, **labels) -> float:
    """One sample of this process's Prometheus figures; 0 where it was never counted."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def cloud_calls(cloud: str, method: str) -> float:
    """How many calls of ``method`` this process has made to ``cloud`` so far."""
    return metric("dispatcher_cloud_call_duration_seconds_count", cloud=cloud, method=method)


# The PostgreSQL server of the database tests. Each test process makes a database of its
# own there (postgresql_engine), and each test a schema of its own in it.
POSTGRESQL_URL = os.environ.get(
    "DISPATCHER_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


# The modules whose tests load both cores (gunicorn with four workers, the production
# setting, Chromium): under pytest-xdist one worker runs them one after another
# (pytest_xdist_make_scheduler). A new module of that kind belongs here. The fuzzing
# (test_fuzz.py, one server and one client taking turns) loads one core, as the other
# modules do, and sets no bound on time: it is not one of them.
HEAVY_MODULES = (
    "test_concurrency.py",
    "test_console_browser.py",
    "test_docs_browser.py",
    "test_idempotency_ec2.py",
    "test_pools_concurrency.py",
    "test_pools_ec2.py",
    "test_production.py",
    "test_quotas_concurrency.py",
    "test_requests_concurrency.py",
    "test_requests_ec2.py",
    "test_revocation_production.py",
)

# The longest of the other modules: handed out right after the heavy unit, so that none of
# them is left to run alone at the end while the other worker has nothing to do.
LONG_MODULES = ("test_fuzz.py",)


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` (pyproject.toml's addopts), with the heavy modules as one unit.

    loadfile hands out whole modules, so that a module's shared server (`server`, the
    production setting, moto) starts once. The heavy modules form one unit, the longest,
    handed out first: one worker runs them in a row while the other runs everything else
    (LONG_MODULES first), so two of them never share the two cores, which would slow both
    beyond the bounds some of their tests set on time (a revocation refused by every
    worker within 1 s).
    """
    if config.getvalue("dist") != "loadfile":
        return None  # another --dist given on the command line: xdist's own
    from xdist.scheduler import LoadFileScheduling

    class HeavyInSeries(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "heavy" if scope.rpartition("/")[2] in HEAVY_MODULES else scope

        def _assign_work_unit(self, node) -> None:
            for scope in [s for s in self.workqueue if s.rpartition("/")[2] in LONG_MODULES]:
                self.workqueue.move_to_end(scope, last=False)
            if "heavy" in self.workqueue:
                self.workqueue.move_to_end("heavy", last=False)
            super()._assign_work_unit(node)

    return HeavyInSeries(config, log)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Every test starts from the embedded defaults, its instance folder in tmp_path."""
    for variable in ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DISPATCHER_INSTANCE_PATH", str(tmp_path / "instance"))


@pytest.fixture(scope="session")
def postgresql_engine():
    """An engine on a database of this test process's own on the PostgreSQL server, made
    here and dropped at the end of the session; a skip where no server answers.

    A database, not only schemas: PostgreSQL delivers a NOTIFY (how a revocation reaches
    every serving process, dispatcher/revocations.py) to every listener of the database,
    so the token caches of two pytest-xdist workers, or of two runs, on one database
    would hear each other's revocations. Where the server will not make one (no CREATEDB
    right), the tests use POSTGRESQL_URL's own database.
    """
    server = sqlalchemy.create_engine(
        POSTGRESQL_URL, connect_args={"connect_timeout": 3}, isolation_level="AUTOCOMMIT"
    )
    try:
        with server.connect():
            pass
    except Exception as exc:  # any failure to connect means: no server here
        server.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRESQL_URL}: {type(exc).__name__}")
    url = sqlalchemy.make_url(POSTGRESQL_URL)
    database = f"dispatcher_test_{uuid.uuid4().hex[:12]}"
    try:
        with server.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
        url = url.set(database=database)
    except sqlalchemy.exc.DBAPIError:
        database = None
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
    if database:
        DATABASES_DROPPED_AT_THE_END.add(database)
    yield engine
    engine.dispose()
    if database:
        with server.connect() as conn:
            # FORCE: a connection a test left open (a server killed mid-test) ends with it.
            conn.execute(sqlalchemy.text(f'DROP DATABASE "{database}" WITH (FORCE)'))
    server.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


# The databases postgresql_engine made: dropped whole at the end of the session, so the
# schemas in them are not dropped one by one.
DATABASES_DROPPED_AT_THE_END: set[str] = set()


@contextmanager
def postgresql_schema(engine) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database of ``engine``: the URL that uses it.
    Dropped at the end, or with its database."""
    schema = f"dispatcher_test_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    url = engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        if engine.url.database not in DATABASES_DROPPED_AT_THE_END:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def postgresql_url(postgresql_engine):
    """A fresh schema on the PostgreSQL server, dropped after the test."""
    with postgresql_schema(postgresql_engine) as url:
        yield url


@pytest.fixture
def database_url(sqlite_url):
    """The database of the test's app: SQLite unless a module asks for both."""
    return sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request):
    """SQLite, then PostgreSQL where a server answers: for the database tests."""
    return request.getfixturevalue(f"{request.param}_url")


# For a test, in a module whose tests run on both databases, that learns nothing more on
# PostgreSQL: its every case is refused before its input reaches the database (a body
# that does not validate), or it is about something else than the database (where a
# token is read, what a pool's ready check lets through). SQLite only, for the suite's
# time; what PostgreSQL takes differently (NUL, overlong text, concurrency) is tested on it.
SQLITE_ONLY = pytest.mark.parametrize("any_database_url", ["sqlite"], indirect=True)


@pytest.fixture
def make_app(database_url, request):
    """Build an app for the test: dummy clouds, its own database with the schema, the cheap
    password hash (not for a test marked `password_hashing`), overrides."""
    made = []
    hashing = {} if request.node.get_closest_marker("password_hashing") else CHEAP_PASSWORD_HASH

    def make(**overrides):
        config = {
            "TESTING": True,
            "CLOUD_FARM": DUMMY_FARM,
            # Room for moto's EC2 on a loaded machine (a first call may take seconds); a
            # test of a cloud that never answers sets its own, shorter timeout.
            "CLOUD_TIMEOUT": 10,
            "SQLALCHEMY_DATABASE_URI": database_url,
            **hashing,
        }
        config.update(overrides)
        app = prepare_database(create_app(config))
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()


def app_of_server(database_url: str, **settings):
    """An app on the database of a server the test starts (gunicorn), with the secrets the
    server runs with, its schema and roles made: to prepare users and rows before it."""
    return prepare_database(
        create_app(
            {
                "SQLALCHEMY_DATABASE_URI": database_url,
                "SECRET_KEY": SECRET_KEY,
                "SECURITY_PASSWORD_SALT": PASSWORD_SALT,
                **settings,
                **CHEAP_PASSWORD_HASH,
            }
        )
    )


def token_client(app, username="tester", roles=("agent",)):
    """A test client that sends the token of ``username`` (made with ``roles``) in X-Auth-Token."""
    prepare_database(app)
    with app.app_context():
        try:
            user = auth.get_user(username)
        except NotFoundError:
            user = auth.create_user(username, "tester-password", roles=roles)
        token = user.get_auth_token()
    client = app.test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token
    return client


def served(app, single_process=True):
    """``app`` as its serving command runs it (its verified tokens kept), once the cache
    may answer."""
    auth.serve(app, single_process=single_process)
    tokens = app.extensions[token_check.EXTENSION]
    deadline = time.monotonic() + 10
    while not tokens.usable():
        assert time.monotonic() < deadline, "the cache never became usable"
        time.sleep(0.01)
    return app


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    """A client holding the token of a user with role agent."""
    return token_client(app)


@pytest.fixture
def anonymous(app):
    """A client without any token."""
    return app.test_client()


def ec2_cloud(port: int, **params) -> dict:
    """A CLOUD_FARM entry for libcloud's EC2 driver talking plain HTTP to a loopback port."""
    return {
        "ENGINE": "ec2",
        "USER": "AKIDLOOPBACKKEY",
        "PASSWORD": "loopback-secret-never-shown",
        "EXTRA_PARAMS": {"host": "127.0.0.1", "port": port, "secure": False, **params},
    }


@pytest.fixture(scope="module")
def moto() -> Iterator[Ec2Cloud]:
    """One moto EC2 server per test module; with ``cloud``, each test starts from a wiped state."""
    with Ec2Cloud() as cloud:
        yield cloud


@pytest.fixture
def cloud(moto: Ec2Cloud) -> Ec2Cloud:
    """The module's moto EC2 server, wiped for this test."""
    moto.reset()
    return moto


@pytest.fixture
def refusing_port():
    """A port on loopback where every connection is refused: bound for the test and never
    listened on, so that no other server (of another test, another worker) takes it."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@pytest.fixture
def hanging_port():
    """A port on loopback that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


class ScriptedCloud:
    """A loopback HTTP server answering from a list of (status, body), then the last one."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._answer()

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer()

            def _answer(self):
                cloud.requests.append(self.path)
                index = min(len(cloud.requests), len(cloud.answers)) - 1
                status, body = cloud.answers[index]
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cistern():
    """A running Cistern contract server holding its SEED rows, stopped after the test."""
    with CisternServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `dispatcher run` (user admin, password ADMIN_PASSWORD) for a module's tests that
    leave it as they found it: they read. A module may define a `server` of its own."""
    server = Server(
        tmp_path_factory.mktemp("server") / "instance", DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD
    )
    yield server
    server.stop()


@pytest.fixture
def good():
    with Receiver(204) as receiver:
        yield receiver


@pytest.fixture
def failing():
    with Receiver(500) as receiver:
        yield receiver


@pytest.fixture
def hanging():
    with Receiver(hang=True) as receiver:
        yield receiver
