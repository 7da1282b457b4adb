"""What the benchmarks share: paths, the database and its token, gunicorn, HTTP, statistics."""

import contextlib
import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from harness.gunicorn_server import GunicornServer
from harness.ports import free_port

# `python -m bench.run` in the checkout puts the checkout first on sys.path: the code
# measured is the checkout's, not whatever an earlier `pip install .` left in
# site-packages. gunicorn runs with the checkout as its cwd.
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

POSTGRESQL_URL = os.environ.get(
    "DISPATCHER_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# The bench process issues the tokens, the gunicorn workers check them: same secrets.
SECRET_KEY = "bench-secret-key-not-for-production"
PASSWORD_SALT = "bench-password-salt-not-for-production"
BENCH_USER = "bench"


class Skipped(Exception):
    """A benchmark that cannot run here (no PostgreSQL, say); the message tells why."""


@dataclass
class Result:
    """One benchmark's outcome: the summary row of the final table and the details."""

    key: str
    title: str
    measured: str
    target: str
    verdict: str
    details: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


# -- statistics --------------------------------------------------------------------------


def percentile(values, fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values``, nearest-rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def median(values) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    """Seconds as milliseconds, with the precision that suits the size."""
    value = seconds * 1000
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


# -- the database ------------------------------------------------------------------------


@contextlib.contextmanager
def postgresql_schema(prefix: str = "dispatcher_bench"):
    """A fresh schema on the PostgreSQL server; the URL that uses it. Dropped at the end.

    :raises Skipped: no PostgreSQL server answers at POSTGRESQL_URL.
    """
    import sqlalchemy

    engine = sqlalchemy.create_engine(POSTGRESQL_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except Exception as exc:  # any failure to connect means: no server here
        engine.dispose()
        raise Skipped(
            f"PostgreSQL not reachable at {POSTGRESQL_URL}: {type(exc).__name__}"
        ) from None
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    url = sqlalchemy.make_url(POSTGRESQL_URL).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextlib.contextmanager
def preferred_database(folder: Path):
    """PostgreSQL (a fresh schema) where a server answers, as in production, else a SQLite
    file in ``folder``: (URL, "PostgreSQL" or "SQLite")."""
    with contextlib.ExitStack() as stack:
        try:
            url, name = stack.enter_context(postgresql_schema()), "PostgreSQL"
        except Skipped:
            url, name = f"sqlite:///{folder / 'bench.sqlite'}", "SQLite"
        yield url, name


def make_app(database_url: str, **config):
    """The dispatcher's app on ``database_url`` with the bench secrets; schema and roles made."""
    from dispatcher import auth, create_app
    from dispatcher.extensions import db

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": SECRET_KEY,
            "SECURITY_PASSWORD_SALT": PASSWORD_SALT,
            "LOG_LEVEL": "WARNING",  # no "user created" lines in the bench's output
            **config,
        }
    )
    with app.app_context():  # as `dispatcher init-db` does
        db.create_all()
        auth.ensure_roles()
    return app


def agent_token(app, username: str = BENCH_USER) -> str:
    """A token of ``username`` (role agent), created in the app's database if missing."""
    from dispatcher import auth
    from dispatcher.errors import NotFoundError

    with app.app_context():
        try:
            user = auth.get_user(username)
        except NotFoundError:
            user = auth.create_user(username, "bench-password", roles=("agent",))
        return user.get_auth_token()


def dispose(app) -> None:
    """Close the app's database connections (before a schema is dropped)."""
    from dispatcher.extensions import db

    with app.app_context():
        db.engine.dispose()


# -- gunicorn ----------------------------------------------------------------------------


class Gunicorn(GunicornServer):
    """``python -m gunicorn -c python:dispatcher.gunicorn_config`` on a free loopback port.

    ``app`` is the WSGI app to serve (``dispatcher.wsgi:app``, the dispatcher;
    ``bench.bare_app:app``, the baseline); ``options`` are more command-line options,
    the same for every server of a benchmark.
    Its output goes to a file, shown when it fails to start.
    """

    def __init__(self, app: str, workers: int, env: dict, folder: Path, options=()):
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:dispatcher.gunicorn_config",
            f"--workers={workers}",
            f"--bind=127.0.0.1:{port}",
            *options,
            app,
        ]
        super().__init__(args, env, folder / f"gunicorn-{port}.log", port)

    def worker_cpu_seconds(self) -> float | None:
        """CPU time (user + system) the workers have used so far; None without Linux's /proc."""
        try:
            tick = os.sysconf("SC_CLK_TCK")
            total = 0
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                except OSError:  # gone meanwhile
                    continue
                # After the command's ")": state, ppid, ..., utime (14th field), stime (15th)
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid:
                    total += int(fields[11]) + int(fields[12])
            return total / tick
        except (OSError, ValueError):
            return None


def server_env(database_url: str, folder: Path, **settings) -> dict:
    """The environment of a gunicorn server: production settings, the bench secrets,
    the database, and ``settings`` written to a DISPATCHER_SETTINGS file."""
    settings_file = folder / "settings.py"
    settings_file.write_text("".join(f"{key} = {value!r}\n" for key, value in settings.items()))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DISPATCHER_", "MIDDLEWARE_", "GUNICORN_"))
        and key not in ("DATABASE_URL", "WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(
        {
            "DISPATCHER_CONFIG": "production",
            "DATABASE_URL": database_url,
            "DISPATCHER_SECRET_KEY": SECRET_KEY,
            "DISPATCHER_PASSWORD_SALT": PASSWORD_SALT,
            "DISPATCHER_SETTINGS": str(settings_file),
            "DISPATCHER_INSTANCE_PATH": str(folder / "instance"),
        }
    )
    return env


@contextlib.contextmanager
def scratch_folder(prefix: str):
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


# -- HTTP --------------------------------------------------------------------------------


def run_clients(count: int, client, seconds: float) -> float:
    """Run ``client(index, deadline)`` in ``count`` threads released together, each until
    the ``time.monotonic()`` deadline ``seconds`` away; return how long they ran."""
    barrier = threading.Barrier(count + 1)
    deadline = {}

    def run(index: int) -> None:
        barrier.wait()
        client(index, deadline["at"])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    deadline["at"] = started + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


class HttpClient:
    """One keep-alive connection (reopened when the server closes it), low overhead."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 30):
        self.port = port
        self.headers = {"X-Auth-Token": token} if token else {}
        self.timeout = timeout
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def send(self, method: str, path: str, body=None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=payload, headers=headers)
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed a kept-alive connection just before our request.
                self.connection.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def request(port: int, method: str, path: str, token=None, body=None, timeout=30):
    """One request on a connection of its own: (status, body)."""
    client = HttpClient(port, token, timeout)
    try:
        return client.send(method, path, body)
    finally:
        client.close()


def table(rows: list[list[str]]) -> str:
    """Rows as aligned columns, the first one the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
