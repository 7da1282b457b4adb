"""A Cistern contract server for the tests: the original client's three calls, in memory.

No public Cistern implementation exists, so this speaks exactly the contract the original
2015 client defines (dispatcher/bookkeeping/cistern.py states it), and records every
request it receives.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

FREE, ASSIGNED, FAULTY = 1, 2, 3
STATUS_DESC = {FREE: "FREE", ASSIGNED: "ASSIGNED", FAULTY: "FAULTY"}

# The Dummy driver's two VMs of cloud fake_driver, free, and a faulty VM it does not have.
SEED = (
    {"id_vm": "1", "hostname": "dummy-1", "cloud": "fake_driver", "status": FREE},
    {"id_vm": "2", "hostname": "dummy-2", "cloud": "fake_driver", "status": FREE},
    {
        "id_vm": "99",
        "hostname": "broken-1",
        "cloud": "fake_driver",
        "status": FAULTY,
        "recipe": "jupyter",
    },
)

ROUTES = {
    "GET": re.compile(r"/nodes/(?P<cloud>[^/]+)"),
    "POST": re.compile(r"/vm/assign/(?P<cloud>[^/]+)"),
    "PUT": re.compile(r"/vm/release/(?P<cloud>[^/]+)"),
}


def assignment(id_: int, seed: dict) -> dict:
    """An ASSIGNMENT row from a seed: ``id_vm``, ``hostname``, ``cloud``, ``status`` at least."""
    return {
        "id": id_,
        "id_vm": seed["id_vm"],
        "hostname": seed["hostname"],
        "cloud": seed["cloud"],
        "recipe": seed.get("recipe"),
        "recipe_id": seed.get("recipe_id"),
        "user": seed.get("user"),
        "status": seed["status"],
        "status_desc": STATUS_DESC[seed["status"]],
    }


class CisternServer:
    """Cistern on a free loopback port; ``url`` is its API root (``.../api/v1``).

    ``requests`` holds ``(method, path, body)`` of everything received, faults
    included; ``misbehave`` and ``reject`` make one method answer badly.
    """

    def __init__(self, rows=SEED, api: str = "v1"):
        self.lock = threading.Lock()
        self.rows = [assignment(number, row) for number, row in enumerate(rows, start=1)]
        self.requests: list[tuple[str, str, object]] = []
        self.prefix = f"/api/{api}"
        self.faults: dict[str, tuple[str, str | None]] = {}
        # Set on stop, so that a handler kept hanging lets its thread end.
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{self.prefix}"
        # A short poll interval: stop() waits up to one for the serving loop to notice.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> "CisternServer":
        """Serve in a daemon thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """End hanging answers, stop serving and close the port."""
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def misbehave(self, method: str, how: str) -> None:
        """Make ``method`` answer HTTP 500 with an HTML page (``"html"``) or never (``"hang"``)."""
        assert how in ("html", "hang")
        self.faults[method] = (how, None)

    def reject(self, method: str, message: str) -> None:
        """Make ``method`` answer Cistern's ``{"status": "error", "message": message}``."""
        self.faults[method] = ("error", message)

    def count(self, method: str) -> int:
        """How many ``method`` requests Cistern received."""
        with self.lock:
            return sum(1 for seen, _, _ in self.requests if seen == method)

    def row(self, hostname: str) -> dict:
        """A copy of the row of ``hostname``."""
        with self.lock:
            return dict(next(row for row in self.rows if row["hostname"] == hostname))

    def _handler(self):
        cistern = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._serve()

            def do_POST(self):  # noqa: N802
                self._serve()

            def do_PUT(self):  # noqa: N802
                self._serve()

            def _serve(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                status, answer = cistern.answer(self.command, self.path, body)
                if answer is None:
                    return  # hanging: the client's timeout ends it
                payload, kind = answer
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler

    def answer(self, method: str, path: str, body) -> tuple[int, tuple[bytes, str] | None]:
        """The HTTP status and (payload, content type) for a request; None to hang."""
        with self.lock:
            self.requests.append((method, path, body))
            how, message = self.faults.get(method, (None, None))
        if how == "hang":
            self.stopping.wait(30)
            return 0, None
        if how == "html":
            page = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
            return 500, (page, "text/html")
        if how == "error":
            return 200, _json({"status": "error", "message": message})
        match = ROUTES[method].fullmatch(path.removeprefix(self.prefix))
        if not path.startswith(self.prefix) or match is None:
            return 404, _json({"status": "error", "message": "Page not found"})
        if not isinstance(body, dict):
            return 400, _json({"status": "error", "message": "Malformed JSON stream"})
        with self.lock:
            operation = {"GET": self._nodes, "POST": self._assign, "PUT": self._release}[method]
            return 200, _json(operation(match["cloud"], body))

    def _nodes(self, cloud: str, body: dict) -> dict:
        if not isinstance(body.get("with_faulty_nodes"), bool):
            return {"status": "error", "message": "with_faulty_nodes: true or false"}
        shown = (FREE, ASSIGNED, FAULTY) if body["with_faulty_nodes"] else (FREE, ASSIGNED)
        rows = [dict(r) for r in self.rows if r["cloud"] == cloud and r["status"] in shown]
        return {"status": "ok", "nodes": rows}

    def _find(self, cloud: str, body: dict) -> dict | None:
        hostname = body.get("hostname")
        return next(
            (r for r in self.rows if (r["cloud"], r["hostname"]) == (cloud, hostname)), None
        )

    def _assign(self, cloud: str, body: dict) -> dict:
        if not all(isinstance(body.get(key), str) for key in ("hostname", "user", "vm_type")):
            return {"status": "error", "message": "hostname, user and vm_type are required"}
        row = self._find(cloud, body)
        if row is None:
            return {"status": "error", "message": f"Hostname {body['hostname']} not found"}
        if row["status"] != FREE:
            return {"status": "error", "message": f"Node {row['id_vm']} already assigned"}
        row.update(status=ASSIGNED, status_desc="ASSIGNED", user=body["user"])
        row["recipe"] = body["vm_type"]
        return _done(row, "assigned")

    def _release(self, cloud: str, body: dict) -> dict:
        row = self._find(cloud, body)
        if row is None:
            return {"status": "error", "message": f"Hostname {body.get('hostname')} not found"}
        if row["status"] != ASSIGNED:
            return {"status": "error", "message": f"Node {row['id_vm']} is not assigned"}
        row.update(status=FREE, status_desc="FREE", user=None)
        return _done(row, "released")


def _done(row: dict, what: str) -> dict:
    return {
        "status": "ok",
        "id_vm": row["id_vm"],
        "id": row["id"],
        "result": f"Node {row['id_vm']} {what}",
    }


def _json(body: dict) -> tuple[bytes, str]:
    return json.dumps(body).encode(), "application/json"


@pytest.fixture
def cistern():
    """A running Cistern contract server holding SEED, stopped after the test."""
    with CisternServer() as server:
        yield server
