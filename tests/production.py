"""The README's production setting, run for real: its commands, gunicorn, and a cuttable proxy.

``production_commands`` reads the first ``sh`` block under README.md's "## Production";
``ProductionServer`` runs those commands (with the test's database, secrets and settings)
and keeps the gunicorn they start; ``start_production`` starts it with a test's clouds and
waits for every worker; ``TcpProxy`` sits between gunicorn and PostgreSQL and can take the
database away and give it back.
"""

import contextlib
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from helpers import REDIS_URL

from harness.gunicorn_server import ROOT, GunicornServer, race
from harness.ports import free_port

README = ROOT / "README.md"
BIN = Path(sys.executable).parent
WORKERS = 4
ADMIN = "admin"
ADMIN_PASSWORD = "production-test-password"
# The access line of dispatcher/gunicorn_config.py with the worker's pid in front, to see
# which worker served a request. Only this log format is changed (GUNICORN_CMD_ARGS).
ACCESS_LOG_FORMAT = 'pid=%(p)s %({x-request-id}o)s "%(m)s %(U)s %(H)s" %(s)s'
ACCESS_LINE = re.compile(r'^pid=<(\d+)> \S* "(\w+) (\S+) [^"]*" (\d+)$', re.MULTILINE)


def production_commands(readme: Path = README) -> list[str]:
    """The command lines of the first ``sh`` block under "## Production", as written."""
    text = readme.read_text()
    section = re.search(r"^## Production\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Production' section"
    block = re.search(r"^```sh\n(.*?)^```", section[1], re.MULTILINE | re.DOTALL)
    assert block, "README.md's '## Production' has no ```sh block"
    lines = [line.strip() for line in block[1].splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class ProductionServer(GunicornServer):
    """The README's production commands, each run by a shell of its own, in ``folder``;
    the gunicorn of the last one.

    The block writes its env file with ``dispatcher env-file`` and has every later shell
    read it (``set -a; . ./FILE; set +a``), as a person following it in several shells
    would. ``substitutions`` replaces the ``NAME=VALUE`` settings given to ``env-file``
    (None drops one); those of ``REQUIRED`` must be given by the README, so that the
    README and the test cannot drift apart unnoticed. ``extra_env`` is in every shell's
    environment (settings file, instance folder). ``pip install`` is skipped: the package
    is installed. ``dispatcher users create`` gets ``--password``. gunicorn gets its bind
    address and an access log line with the worker's pid through GUNICORN_CMD_ARGS, which
    its command-line options still override.
    """

    REQUIRED = ("DATABASE_URL",)

    def __init__(self, folder: Path, substitutions: dict, extra_env: dict):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api/v1"
        self.token = None
        self.folder = folder
        self.database_url = substitutions["DATABASE_URL"]
        # The shells find the installed commands first; nothing else of the test's is set.
        env = {**os.environ, **extra_env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        for variable in ("DISPATCHER_CONFIG", "DISPATCHER_SECRET_KEY", "DISPATCHER_PASSWORD_SALT"):
            env.pop(variable, None)
        # The workers' metrics files in the test's folder rather than a new /tmp folder.
        env["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "metrics")
        *commands, gunicorn = production_commands()
        reading = None  # the line that reads the env file, once the block says it
        for line in commands:
            argv = shlex.split(line)
            if argv[:2] == ["pip", "install"]:
                continue
            if argv[:2] == ["dispatcher", "env-file"]:
                line = shlex.join(self._settings(argv, substitutions))
            elif argv[0] == "set":
                reading = line
                continue
            elif argv[:3] == ["dispatcher", "users", "create"]:
                line = f"{line} --password={shlex.quote(ADMIN_PASSWORD)}"
            assert argv[0] == "dispatcher", f"README's production block runs {line}"
            self._run(line if reading is None else f"{reading}\n{line}", env)
        assert reading, "README's production block never reads its env file"
        self.env, self.reading = env, reading
        assert gunicorn.startswith("gunicorn "), f"README's production block ends with {gunicorn}"
        env["GUNICORN_CMD_ARGS"] = shlex.join(
            [f"--bind=127.0.0.1:{self.port}", f"--access-logformat={ACCESS_LOG_FORMAT}"]
        )
        self.command = ["bash", "-c", f"{reading}\nexec {gunicorn}"]
        try:
            super().__init__(self.command, env, folder / "gunicorn.log", self.port, cwd=folder)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        try:
            self.token = self.login()
        except BaseException:
            # Nobody else holds it yet: the fixture only learns of a started server.
            self.stop()
            print(self.output())
            raise

    def _settings(self, argv: list[str], substitutions: dict) -> list[str]:
        """``dispatcher env-file FILE NAME=VALUE...`` with the test's values."""
        given = dict(setting.partition("=")[::2] for setting in argv[3:])
        missing = set(self.REQUIRED) - set(given)
        assert not missing, f"README's env-file no longer sets {sorted(missing)}"
        given.update(substitutions)
        settings = [f"{name}={value}" for name, value in given.items() if value is not None]
        return [*argv[:3], *settings]

    def _run(self, script: str, env: dict) -> None:
        """``script`` in a new bash, in the test's folder."""
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        shown = script.replace(ADMIN_PASSWORD, "***")
        assert done.returncode == 0, f"{shown} failed:\n{done.stdout}{done.stderr}"

    def run_command(self, line: str) -> None:
        """A ``dispatcher`` command line in a new shell that reads the env file, as an
        operator beside the running service would run it."""
        self._run(f"{self.reading}\n{line}", self.env)

    def login(self, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> str:
        """A token of the README's admin (or of ``username``), from POST /api/v1/auth."""
        answer = requests.post(
            f"{self.base}/auth",
            json={"username": username, "password": password},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["token"]

    def get(self, path: str, session=requests, **kwargs) -> requests.Response:
        """GET /api/v1<path> with the admin's token."""
        return session.get(
            f"{self.base}{path}", headers={"X-Auth-Token": self.token}, timeout=60, **kwargs
        )

    def access(self, since: int = 0) -> list[tuple[int, str, str, int]]:
        """(pid, method, path, status) of each request logged after offset ``since``."""
        text = self.output()[since:]
        return [(int(m[1]), m[2], m[3], int(m[4])) for m in ACCESS_LINE.finditer(text)]

    def mark(self) -> int:
        """An offset in the log: ``access(since=mark)`` sees only later requests."""
        return len(self.output())

    def serve_on_every_worker(self, path: str, status: int = 200, deadline: float = 30) -> set:
        """Send concurrent GETs of ``path`` until every worker answered one with ``status``.

        Each answer must have ``status``. Returns the pids that served them.
        """
        since = self.mark()
        end = time.monotonic() + deadline
        while True:
            answers = race(2 * WORKERS, lambda index, session: self.get(path, session))
            unexpected = [(a.status_code, a.text) for a in answers if a.status_code != status]
            assert not unexpected, unexpected
            # A worker logs its request after sending the answer: give the lines a moment.
            time.sleep(0.1)
            logged = self.access(since)
            pids = {pid for pid, _, served, _ in logged if served == f"/api/v1{path}"}
            if len(pids) >= WORKERS:
                return pids
            if time.monotonic() > end:
                pytest.fail(f"only workers {pids} answered {path}:\n{self.output()}")


class TcpProxy:
    """A loopback TCP forwarder to ``target``, one thread per direction of each connection.

    ``stop()`` closes the listener and cuts every open connection: to the client it is as
    if the database went away. ``start()`` listens again on the same port.
    """

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = None
        self._thread = None
        self._stopping = threading.Event()

    def start(self) -> "TcpProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._listener is None:
            return
        self._stopping.set()
        self._thread.join()
        self._listener.close()
        self._listener = None
        with self._lock:
            cut, self._sockets = self._sockets, set()
        for sock in cut:
            self._close(sock)

    @property
    def connections(self) -> int:
        """Sockets open now (two per proxied connection)."""
        with self._lock:
            return len(self._sockets)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._close(client)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        # One side ended: end both, as a dying connection would.
        with self._lock:
            self._sockets -= {source, sink}
        self._close(source)
        self._close(sink)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def start_production(folder, database_url: str, farm: dict, cloud_timeout: int = 2):
    """The README's production setting on ``database_url`` with a CLOUD_FARM and
    CLOUD_TIMEOUT of the test's, once every worker has answered."""
    settings = folder / "settings.py"
    settings.write_text(f"CLOUD_FARM = {farm!r}\nCLOUD_TIMEOUT = {cloud_timeout!r}\n")
    substitutions = {
        "DATABASE_URL": database_url,
        "DISPATCHER_RATELIMIT_STORAGE_URI": REDIS_URL if redis_answers() else None,
    }
    extra_env = {
        "DISPATCHER_SETTINGS": str(settings),
        "DISPATCHER_INSTANCE_PATH": str(folder / "instance"),
    }
    server = ProductionServer(folder, substitutions, extra_env)
    try:
        server.serve_on_every_worker("/nodes/default")
    except BaseException:
        server.stop()
        print(server.output())
        raise
    return server
