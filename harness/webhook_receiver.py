"""A webhook receiver on loopback, for the tests of the lease webhooks."""

import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A webhook receiver on loopback: records each request (method, path, headers, raw
    body, when it came) and answers ``status`` (with ``location`` for a redirect).

    With ``hang``, it answers nothing and waits until the caller gives up on it (closes
    the connection), and records when that happened in ``abandoned_at``.
    """

    def __init__(self, status: int = 204, location: str | None = None, hang: bool = False):
        self.calls = []
        self.abandoned_at = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.calls.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "at": time.monotonic(),
                    }
                )
                if hang:
                    self._wait_until_abandoned()
                    return
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                if status != 204:
                    self.send_header("Content-Length", "0")
                self.end_headers()

            def _wait_until_abandoned(self):
                deadline = time.monotonic() + 10  # the test is broken past this
                while time.monotonic() < deadline:
                    readable, _, _ = select.select([self.connection], [], [], 0.02)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        receiver.abandoned_at.append(time.monotonic())
                        return

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str = "/hooks/lease") -> str:
        return f"{self.origin}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
