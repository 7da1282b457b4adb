"""What several test modules share that is not a fixture: the servers the tests start
(`dispatcher run`, gunicorn with four workers), the browser's settings, scripted cloud
answers and the webhooks' secret. The fixtures are in conftest.py; what the tests share
with the benchmarks is in harness/.

Test modules import from here (and from conftest.py, production.py, cistern_server.py),
never from one another.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy
from alembic.script import ScriptDirectory
from sqlalchemy import select

from dispatcher import auth, create_app, database
from dispatcher.extensions import db, migrate
from dispatcher.models import ADMIN, AGENT, DELETED, Assignment, AuditEntry
from harness.gunicorn_server import ROOT, GunicornServer, race
from harness.ports import free_port, listens, xdist_worker

# -- what every server the tests start reads ----------------------------------------------

# argon2 at the lowest cost it takes (8 KiB, one pass, one lane) rather than the package's
# (64 MiB, three passes, four lanes: about 0.3 s a hash on two cores, for every user made
# and every login). The scheme and the code path stay those of production (an HMAC with the
# salt, then argon2), so no test database holds a password in clear. The tests of hashing
# itself are marked `password_hashing` and keep the package's settings.
CHEAP_PASSWORD_HASH = {
    "SECURITY_PASSWORD_HASH_PASSLIB_OPTIONS": {
        "argon2__memory_cost": 8,
        "argon2__rounds": 1,
        "argon2__parallelism": 1,
    },
}


# The checkout's settings file, beside wsgi.py: what `dispatcher run` reads in a checkout.
CHECKOUT_SETTINGS = Path(__file__).resolve().parent.parent / "config.py"


def settings_file(path: Path, **settings) -> Path:
    """Write a DISPATCHER_SETTINGS file for a server the test starts: the checkout's
    config.py, the cheap password hash, then ``settings``. Returns ``path``."""
    lines = [f"{key} = {value!r}\n" for key, value in {**CHEAP_PASSWORD_HASH, **settings}.items()]
    path.write_text(CHECKOUT_SETTINGS.read_text() + "\n" + "".join(lines))
    return path


def prepare_database(app):
    """The schema at the newest revision and the roles, as `dispatcher init-db` makes them.

    Made from the models and stamped, which is quicker than running every migration;
    test_migrations.py checks that both give the same schema.
    """
    with app.app_context():
        if database.current() is None:
            with db.engine.begin() as connection:
                script = ";\n".join(_schema_script(connection.dialect))
                if connection.dialect.name == "sqlite":
                    # sqlite3 commits each DDL statement by itself (a sync of the file
                    # each) unless the script opens its own transaction.
                    connection.connection.executescript(f"BEGIN;\n{script};\nCOMMIT;")
                else:
                    connection.exec_driver_sql(script)
        auth.ensure_roles()
    return app


# dialect name -> the statements of prepare_database's schema
_SCHEMA_SCRIPTS: dict[str, list[str]] = {}


def _schema_script(dialect) -> list[str]:
    """What db.create_all() and `flask db stamp head` send on ``dialect``, compiled once
    per test process and sent at once, in one transaction: most tests make a database, and
    making it statement by statement, a commit each, took a tenth of the suite's time."""
    if dialect.name not in _SCHEMA_SCRIPTS:
        statements = []
        mock = sqlalchemy.create_mock_engine(
            sqlalchemy.make_url(f"{dialect.name}://"),
            lambda sql, *args, **kwargs: statements.append(str(sql.compile(dialect=dialect))),
        )
        db.metadata.create_all(mock, checkfirst=False)
        config = migrate.get_config()
        head = ScriptDirectory.from_config(config).get_current_head()
        statements += [
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
            f"INSERT INTO alembic_version (version_num) VALUES ('{head}')",
        ]
        _SCHEMA_SCRIPTS[dialect.name] = statements
    return _SCHEMA_SCRIPTS[dialect.name]


# Keys that a test must not inherit from the environment it runs in.
ENVIRONMENT = (
    "DISPATCHER_CONFIG",
    "DISPATCHER_SETTINGS",
    "MIDDLEWARE_SETTINGS",
    "DISPATCHER_SECRET_KEY",
    "DATABASE_URL",
    "DISPATCHER_PASSWORD_SALT",
    "DISPATCHER_ADMIN_PASSWORD",
    "DISPATCHER_RATELIMIT_STORAGE_URI",
    "DISPATCHER_METRICS_TOKEN",
    "DISPATCHER_LEASE_WEBHOOK_SECRET",
)


# -- Redis -----------------------------------------------------------------------------

# The login throttle's tests (test_throttle.py, test_production.py) count in a database of
# Redis that they empty: 15, and 15 - n for pytest-xdist's worker n, so that no worker
# empties another's counts. Database 0, where README's "Production" keeps its counts, is
# never used.
_WORKER, _WORKERS = xdist_worker()
if 2 * _WORKERS > 15:
    raise RuntimeError(f"{_WORKERS} workers: Redis databases 1 to 15 serve 7 at most (-n 7)")
REDIS_URL = f"redis://127.0.0.1:6379/{15 - _WORKER}"
# The tests of a Redis that goes away and comes back: a database of the worker's that the
# other tests do not flush (13, then 12, ... with two workers).
RETURNING_REDIS_URL = f"redis://127.0.0.1:6379/{15 - _WORKERS - _WORKER}"


# -- `dispatcher run` ----------------------------------------------------------------------

DISPATCHER = Path(sys.executable).with_name("dispatcher")
ADMIN_PASSWORD = "admin-password-for-the-tests"
EXAMPLES = ROOT / "api_call_examples"


class Server:
    """A `dispatcher run` process on a free loopback port, its instance folder ``instance``.

    ``settings`` (after the suite's cheap password hash) go to a DISPATCHER_SETTINGS file
    beside the instance folder, ``env`` on top of the environment (less what a test must
    not inherit, as ENVIRONMENT says). What the server prints goes to a file
    there too: a pipe that nobody reads while it runs would fill and block the server.
    """

    def __init__(self, instance: Path, settings: dict | None = None, **env):
        folder = instance.parent
        self.env = {key: value for key, value in os.environ.items() if key not in ENVIRONMENT}
        self.env.update(DISPATCHER_INSTANCE_PATH=str(instance), **env)
        # A port drawn free can be taken before the server binds it (by a server of another
        # run on this machine): the server then says so and exits, and another port is drawn.
        for _ in range(3):
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}/api/v1"
            settings_path = settings_file(folder / f"settings-{self.port}.py", **(settings or {}))
            # The test's own env wins: DISPATCHER_SETTINGS="" runs on the checkout's config.py.
            self.env["DISPATCHER_SETTINGS"] = env.get("DISPATCHER_SETTINGS", str(settings_path))
            self.log = folder / f"dispatcher-{self.port}.log"
            with self.log.open("w") as output:
                self.process = subprocess.Popen(
                    [str(DISPATCHER), "run", "--port", str(self.port)],
                    env=self.env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_until_ready():
                return
        pytest.fail(f"dispatcher run found no free port:\n{self.output()}")

    def _wait_until_ready(self) -> bool:
        """Wait until the server listens on its port and answers there; False if it could
        not listen there, a failure of the test if it exits otherwise or takes too long."""
        deadline = time.monotonic() + 30
        while True:
            try:
                # Its own port: not another server that took the port first and answers there.
                if listens(self.process.pid, self.port):
                    requests.get(f"{self.base}/", timeout=1)
                    return True
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None and "Address already in use" in self.output():
                return False
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"dispatcher run did not start:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        """Stop the server; return what it printed."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        return self.output()


def admin_token(server: Server) -> str:
    """The original suite's first step: authenticate over HTTP."""
    response = requests.post(
        f"{server.base}/auth", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    return response.json()["token"]


# -- gunicorn with four workers ------------------------------------------------------------

GUNICORN = Path(sys.executable).with_name("gunicorn")
GUNICORN_WORKERS = 4
# The test process issues the token, the workers check it: both need the same secrets.
SECRET_KEY = "concurrency-test-secret-key"
PASSWORD_SALT = "concurrency-test-password-salt"
# The worker's pid in each access log line, to see which process served a request.
ACCESS_LOG_FORMAT = 'pid=%(p)s "%(r)s" %(s)s'
ACCESS_LINE = re.compile(r'^pid=<(\d+)> "(\w+) (\S+) [^"]*" (\d+)$', re.MULTILINE)


class Gunicorn(GunicornServer):
    """`gunicorn -w 4 dispatcher.wsgi:app` on a free loopback port; its output in a file."""

    def __init__(self, folder: Path, env: dict):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}/api/v1"
        args = [
            str(GUNICORN),
            f"--workers={GUNICORN_WORKERS}",
            f"--bind=127.0.0.1:{port}",
            f"--chdir={ROOT}",
            # Nothing is in flight when a test stops it, and an idle worker notices SIGTERM
            # only once its wait for a connection (half the worker timeout) ends.
            "--graceful-timeout=1",
            "--access-logfile=-",
            f"--access-logformat={ACCESS_LOG_FORMAT}",
            "dispatcher.wsgi:app",
        ]
        try:
            super().__init__(args, env, folder / "gunicorn.log", port)
        except RuntimeError as exc:
            pytest.fail(str(exc))

    def put(self, session: requests.Session, action: str, token: str, **body):
        """PUT /vm/action/<action>/fake_driver with ``body`` and the token in X-Auth-Token."""
        return session.put(
            f"{self.base}/vm/action/{action}/fake_driver",
            json=body,
            headers={"X-Auth-Token": token},
            timeout=30,
        )

    def warm_up(self, token: str, path: str = "/api/v1/nodes/fake_driver") -> None:
        """Send token-checked GETs of ``path`` until every worker has served one.

        A worker's first request is slow (lazy imports, the Dummy driver, the first queries):
        cold workers would leave one warm worker to serve a race nearly alone, in series.
        """
        deadline = time.monotonic() + 20
        while len(self.worker_pids(path, 0)) < GUNICORN_WORKERS:
            if time.monotonic() > deadline:
                pytest.fail(f"not every worker answered:\n{self.output()}")
            answers = race(
                2 * GUNICORN_WORKERS,
                lambda index, session: session.get(
                    f"http://127.0.0.1:{self.port}{path}",
                    headers={"X-Auth-Token": token},
                    timeout=30,
                ),
            )
            assert {answer.status_code for answer in answers} == {200}

    def worker_pids(self, path: str, count: int) -> set[int]:
        """The pids of the workers that served requests to ``path``, once ``count`` are logged."""
        # A worker logs the request after sending the answer: wait for the lines a moment.
        deadline = time.monotonic() + 5
        while True:
            lines = [m for m in ACCESS_LINE.finditer(self.output()) if m[3] == path]
            if len(lines) >= count or time.monotonic() > deadline:
                return {int(m[1]) for m in lines}
            time.sleep(0.05)


# -- warm pools on EC2 and PostgreSQL ------------------------------------------------------

# The test process issues the tokens and makes the schema, the commands and the workers check
# them: all need the same secrets.
SITE_SECRET_KEY = "pools-ec2-test-secret-key"
SITE_PASSWORD_SALT = "pools-ec2-test-password-salt"


class PoolGunicorn(Gunicorn):
    """The concurrency tests' `gunicorn -w 4`, with an assign by type."""

    def assign(
        self, session: requests.Session, token: str, user: str, vm_type: str
    ) -> requests.Response:
        """An assign by type: PUT /vm/action/assign with vm_type and user, no VM named."""
        return session.put(
            f"{self.base}/vm/action/assign",
            json={"vm_type": vm_type, "user": user},
            headers={"X-Auth-Token": token},
            timeout=30,
        )


class Site:
    """A deployment of the dispatcher with warm pools: a settings file, a PostgreSQL schema with
    the tables, an agent's token and an admin's, the `dispatcher` command and gunicorn on
    them."""

    def __init__(self, folder: Path, database_url: str, farm: dict, pools: dict, **settings):
        self.folder = folder
        self.pools = pools
        config = {"CLOUD_FARM": farm, "POOLS": pools, **settings}
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DISPATCHER_SECRET_KEY": SITE_SECRET_KEY,
            "DISPATCHER_PASSWORD_SALT": SITE_PASSWORD_SALT,
            "DISPATCHER_SETTINGS": str(settings_file(folder / "settings.py", **config)),
            "DISPATCHER_INSTANCE_PATH": str(folder / "instance"),
            "PYTHONUNBUFFERED": "1",
        }
        self.app = prepare_database(
            create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": database_url,
                    "SECRET_KEY": SITE_SECRET_KEY,
                    "SECURITY_PASSWORD_SALT": SITE_PASSWORD_SALT,
                    **CHEAP_PASSWORD_HASH,
                    **config,
                }
            )
        )
        with self.app.app_context():
            agent = auth.create_user("pooler", "pooler-password", roles=(AGENT,))
            self.token = agent.get_auth_token()
            admin = auth.create_user("overseer", "overseer-password", roles=(ADMIN,))
            self.admin_token = admin.get_auth_token()
        self.engine = sqlalchemy.create_engine(database_url)
        self.servers: list[PoolGunicorn] = []
        self.managers: list[subprocess.Popen] = []

    def command(self, *args: str) -> subprocess.CompletedProcess:
        """`dispatcher ARGS`, run to its end."""
        return subprocess.run(
            [str(DISPATCHER), *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def reconcile(self, *args: str) -> subprocess.CompletedProcess:
        """`dispatcher pools reconcile ARGS`, run to its end."""
        return self.command("pools", "reconcile", *args)

    def start(self, *args: str, name: str) -> subprocess.Popen:
        """`dispatcher ARGS`, started; its output in the file ``name``.log."""
        with (self.folder / f"{name}.log").open("w") as output:
            manager = subprocess.Popen(
                [str(DISPATCHER), *args],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.managers.append(manager)
        return manager

    def start_reconcile(self, *args: str, name: str = "reconcile") -> subprocess.Popen:
        """`dispatcher pools reconcile ARGS`, started; its output in the file ``name``.log."""
        return self.start("pools", "reconcile", *args, name=name)

    def output(self, name: str = "reconcile") -> str:
        return (self.folder / f"{name}.log").read_text()

    def gunicorn(self) -> PoolGunicorn:
        """gunicorn with four workers on the site, every worker warmed up."""
        server = PoolGunicorn(self.folder, self.env)
        self.servers.append(server)
        server.warm_up(self.token, path=f"/api/v1/pools/{next(iter(self.pools))}")
        return server

    def rows(self, pool: str | None = None) -> list:
        """The rows of ``pool`` (else of every pool) in the ledger (Assignment's columns),
        deleted ones too, in the order they were made."""
        query = select(Assignment).where(
            Assignment.pool == pool if pool is not None else Assignment.pool.is_not(None)
        )
        with self.engine.connect() as conn:
            return conn.execute(query.order_by(Assignment.id)).all()

    def live(self, pool: str | None = None) -> list:
        return [row for row in self.rows(pool) if row.status != DELETED]

    def history(self, action: str) -> list:
        """The history's entries of ``action`` (AuditEntry's columns), oldest first."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            ).all()

    def close(self) -> None:
        for manager in self.managers:
            if manager.poll() is None:
                manager.kill()
                manager.wait()
        for server in self.servers:
            server.stop()
            print(server.output())  # shown when the test failed
        with self.app.app_context():
            db.engine.dispose()
        self.engine.dispose()


# -- headless Chromium ---------------------------------------------------------------------

# Debian's chromium and chromium-driver: .ci/run installs them where missing. Selenium is
# given both paths, so it never runs Selenium Manager (which would download a browser).
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The network is closed: without these, Chromium keeps trying to reach Google.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
)
WAIT = 30  # seconds, at most, for any one step of the page
# Every URL the page loaded: the document itself and each resource (scripts, styles,
# the OpenAPI document, the requests the page made).
LOADED_URLS = """
return performance.getEntriesByType('navigation')
  .concat(performance.getEntriesByType('resource'))
  .map(entry => entry.name);
"""


# -- scripted answers of EC2 (conftest's ScriptedCloud) ---------------------------------

EC2_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
NO_INSTANCES = (
    200,
    f'<DescribeInstancesResponse xmlns="{EC2_NAMESPACE}">'
    "<requestId>r-1</requestId><reservationSet/></DescribeInstancesResponse>",
)
INTERNAL_ERROR = (
    500,
    "<Response><Errors><Error><Code>InternalError</Code>"
    "<Message>An internal error has occurred</Message>"
    "</Error></Errors><RequestID>r-3</RequestID></Response>",
)


# -- lease webhooks ------------------------------------------------------------------------

CONFIGURATION = ROOT / "docs" / "configuration.md"
WEBHOOK_SECRET = "webhook-secret-never-shown"


def docs_recipe():
    """The signature check of docs/configuration.md's "Lease webhooks", run as written."""
    text = CONFIGURATION.read_text()
    section = re.search(r"^## Lease webhooks\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "docs/configuration.md has no '## Lease webhooks' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section[1], re.MULTILINE | re.DOTALL)
    [recipe] = [block for block in blocks if "compare_digest" in block]
    namespace = {}
    exec(compile(recipe, str(CONFIGURATION), "exec"), namespace)  # noqa: S102 (our docs)
    return namespace["verified"]
