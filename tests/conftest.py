"""Fixtures: the app on a temporary SQLite file, its test client, and loopback clouds."""

import socket
import threading
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dispatcher import create_app

DUMMY_FARM = {"default": {"ENGINE": "dummy"}, "fake_driver": {"ENGINE": "dummy"}}

# Keys that a test must not inherit from the environment it runs in.
ENVIRONMENT = (
    "DISPATCHER_CONFIG",
    "DISPATCHER_SETTINGS",
    "MIDDLEWARE_SETTINGS",
    "DISPATCHER_SECRET_KEY",
    "DATABASE_URL",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Every test starts from the embedded defaults, its instance folder in tmp_path."""
    for variable in ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DISPATCHER_INSTANCE_PATH", str(tmp_path / "instance"))


@pytest.fixture
def make_app(tmp_path):
    """Build an app for the test: dummy clouds, SQLite in tmp_path, overrides on top."""

    def make(**overrides):
        config = {
            "TESTING": True,
            "CLOUD_FARM": DUMMY_FARM,
            "CLOUD_TIMEOUT": 2,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
        }
        config.update(overrides)
        return create_app(config)

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ec2_cloud(port: int, **params) -> dict:
    """A CLOUD_FARM entry for libcloud's EC2 driver talking plain HTTP to a loopback port."""
    return {
        "ENGINE": "ec2",
        "USER": "AKIDLOOPBACKKEY",
        "PASSWORD": "loopback-secret-never-shown",
        "EXTRA_PARAMS": {"host": "127.0.0.1", "port": port, "secure": False, **params},
    }


@pytest.fixture
def refusing_port():
    """A port on loopback where every connection is refused."""
    return free_port()


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
