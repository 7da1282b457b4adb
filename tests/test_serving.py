"""What the HTTP servers answer and log themselves: `dispatcher run` and gunicorn with the
dispatcher's settings, sent requests they cannot read, with a token in them."""

import json
import logging
import os
import secrets
import socket
import sys
import time

import pytest
from helpers import ADMIN_PASSWORD, Server, admin_token
from itsdangerous import URLSafeTimedSerializer

from dispatcher.serving import REDACTED, RedactingFilter, redact
from harness.gunicorn_server import GunicornServer
from harness.ports import free_port

TOKEN = "WFhYLXNlY3JldC10b2tlbi12YWx1ZQ"  # never to be seen in an answer or a log

# Request lines no server reads as HTTP, each with a token in its query string.
MALFORMED = {
    "raw UTF-8": f"GET /api/v1/nodes?auth_token={TOKEN}&n=\u00e9t\u00e9 HTTP/1.1".encode(),
    "tab": f"GET /api/v1/nodes?auth_token={TOKEN}\tx HTTP/1.1".encode(),
    "DEL": f"GET /api/v1/nodes?auth_token={TOKEN}\x7f HTTP/1.1".encode(),
    "NUL": f"GET /api/v1/nodes?auth_token={TOKEN}\x00 HTTP/1.1".encode(),
    "no version": f"GET /api/v1/nodes?auth_token={TOKEN} HTTP/9 x".encode(),
}


def issued_token(uid_length: int) -> str:
    """A token as Flask-Security-Too issues one (itsdangerous' URLSafeTimedSerializer over
    its payload): ``payload.timestamp.signature``, the payload compressed (a leading dot)
    when that is shorter, as with a long ``uid``."""
    serializer = URLSafeTimedSerializer(secrets.token_hex(16), salt="remember")
    uid = secrets.token_hex(uid_length // 2)
    return serializer.dumps({"ver": "5", "uid": uid, "fs_paa": time.time(), "exp": 0})


PLAIN_TOKEN, COMPRESSED_TOKEN = issued_token(32), issued_token(64)
# Requests gunicorn refuses, whose error line would carry a token: in a header's name,
# without the colon, as a line of its own, in the path of a malformed request line.
TOKEN_IN_HEADER_NAMES = {
    "name glued to the token": f"X-Auth Token{PLAIN_TOKEN}",
    "name and token, no colon": f"X-Auth-Token {PLAIN_TOKEN}",
    "the token, a space, a colon": f"{PLAIN_TOKEN} x: 1",
    "the token alone": PLAIN_TOKEN,
    "compressed, glued": f"X-Auth Token{COMPRESSED_TOKEN}",
    "compressed, alone": COMPRESSED_TOKEN,
}


def token_parts(token: str) -> list[str]:
    """What of a token must not be logged: it whole, its payload and its signature."""
    payload, _, signature = token.lstrip(".").split(".")
    return [token, payload, signature]


def exchange(port: int, request: bytes) -> tuple[int | None, dict, bytes]:
    """Send ``request`` raw; the status, the headers and the body of the answer.

    An answer without a status line (HTTP/0.9's, which http.server gives to a line it
    cannot split into three words) is all body: no status, no headers.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    if not answer.startswith(b"HTTP/"):
        return None, {}, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, body


def assert_answered_in_the_envelope(status, headers, body):
    answer = json.loads(body)
    assert answer["status"] == "error"
    assert 400 <= answer["status_code"] < 500, answer
    assert TOKEN.encode() not in body
    if status is not None:
        assert answer["status_code"] == status
        assert headers["Content-Type"].startswith("application/json"), headers


def long_header_request() -> bytes:
    """A token of 100 KB in X-Auth-Token."""
    return (
        f"GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}{'A' * 100_000}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def development_server(tmp_path_factory):
    server = Server(
        tmp_path_factory.mktemp("run") / "instance", DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD
    )
    yield server
    server.stop()


def test_dispatcher_run_logs_no_token_of_a_request_it_cannot_read(tmp_path):
    server = Server(tmp_path / "instance")
    try:
        for line in MALFORMED.values():
            exchange(server.port, line + b"\r\n\r\n")
    finally:
        output = server.stop()
    assert "request not read" in output
    assert TOKEN not in output


@pytest.mark.parametrize("around", [("", " \t "), (" \t", "\t ")], ids=["after", "both sides"])
def test_dispatcher_run_takes_a_token_with_whitespace_around_it(development_server, around):
    """Sent raw, as a client may: spaces and tabs around X-Auth-Token's value are not part of
    the token. (http.server drops those before the value, the dispatcher those after.)"""
    before, after = around
    token = admin_token(development_server)
    request = (
        f"GET /api/v1/nodes/fake_driver HTTP/1.1\r\nHost: x\r\n"
        f"X-Auth-Token:{before}{token}{after}\r\nConnection: close\r\n\r\n"
    )
    status, _, body = exchange(development_server.port, request.encode())
    assert status == 200, body


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """gunicorn with the dispatcher's settings, its home and runtime folders its own."""
    folder = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = {
        **os.environ,
        "DISPATCHER_INSTANCE_PATH": str(folder / "instance"),
        "DISPATCHER_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "HOME": str(folder / "home"),
        "XDG_RUNTIME_DIR": str(folder / "run"),
        "GUNICORN_CMD_ARGS": "--log-level debug",
    }
    (folder / "run").mkdir()
    args = [sys.executable, "-m", "gunicorn", "-c", "python:dispatcher.gunicorn_config"]
    server = GunicornServer([*args, "dispatcher.wsgi:app"], env, folder / "log", port)
    server.folder = folder
    yield server
    server.stop()


@pytest.fixture(params=["dispatcher run", "gunicorn"])
def any_server(request):
    """Each server in turn: the development one and gunicorn with the dispatcher's settings."""
    return request.getfixturevalue(
        "development_server" if request.param == "dispatcher run" else "gunicorn"
    )


@pytest.mark.parametrize("line", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_request_the_server_cannot_read_is_answered_in_the_envelope(any_server, line):
    status, headers, body = exchange(any_server.port, line + b"\r\n\r\n")
    assert_answered_in_the_envelope(status, headers, body)


def test_a_huge_token_header_is_answered_in_the_envelope(any_server):
    status, headers, body = exchange(any_server.port, long_header_request())
    assert status == 431
    assert_answered_in_the_envelope(status, headers, body)


def test_gunicorn_logs_no_token_whatever_the_request_line(gunicorn):
    """At debug level, after every malformed line above and a huge header."""
    for line in MALFORMED.values():
        exchange(gunicorn.port, line + b"\r\n\r\n")
    exchange(gunicorn.port, long_header_request())
    output = gunicorn.output()
    assert "Invalid request from ip=127.0.0.1" in output
    assert "[redacted]" in output
    assert TOKEN not in output


def test_gunicorn_logs_no_token_in_a_header_name_or_anywhere(gunicorn):
    """A token where no header value is (in a malformed header line, in a path) is hidden by
    its shape, as the dispatcher issues tokens: nothing of it reaches the log."""
    since = len(gunicorn.output())
    for line in TOKEN_IN_HEADER_NAMES.values():
        request = f"GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n"
        status, _, body = exchange(gunicorn.port, request.encode())
        assert status == 400, body
    exchange(gunicorn.port, f"GET /api/v1/nodes/{COMPRESSED_TOKEN}\x7f HTTP/1.1\r\n\r\n".encode())
    output = gunicorn.output()[since:]
    assert output.count("Invalid request from ip=127.0.0.1") == len(TOKEN_IN_HEADER_NAMES) + 1
    leaked = [part for token in (PLAIN_TOKEN, COMPRESSED_TOKEN) for part in token_parts(token)]
    assert [part for part in leaked if part in output] == [], output


@pytest.mark.parametrize("token", [PLAIN_TOKEN, COMPRESSED_TOKEN], ids=["plain", "compressed"])
def test_redact_hides_a_token_by_its_shape(token):
    """Glued to a header name, alone, quoted, in a path: the token goes, its context stays."""
    for text in (f"X-Auth Token{token}", f"'{token}'", f"GET /x/{token}/y", f"a {token} b"):
        hidden = redact(text)
        assert [part for part in token_parts(token) if part in hidden] == [], hidden
        assert REDACTED in hidden


@pytest.mark.parametrize(
    "line",
    [
        "Using worker: dispatcher.serving.EnvelopeWorker",
        "Listening at: http://127.0.0.1:5070 (4242)",
        "sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed",
        "Invalid HTTP header name: 'X-Auth Token'",
    ],
)
def test_redact_leaves_lines_without_a_token_alone(line):
    assert redact(line) == line


@pytest.mark.parametrize("token", [PLAIN_TOKEN, COMPRESSED_TOKEN], ids=["plain", "compressed"])
def test_a_log_record_reaches_its_handler_without_a_token(token):
    """Whatever carries the token (an access line's atoms, a tuple of arguments, or
    arguments its message cannot take), the line a handler writes hides it."""
    records = [
        ('%(h)s "%(r)s" %(s)s', {"h": "127.0.0.1", "r": f"GET /x?auth_token={token}", "s": "200"}),
        ("caller %s sent %s", ("ada", token)),
        ("%d requests", (f"X-Auth-Token: {token}",)),  # %d of a string: left to the handler
    ]
    for message, args in records:
        record = logging.LogRecord(
            "gunicorn.access", logging.INFO, __file__, 1, message, args, None
        )
        assert RedactingFilter().filter(record)
        try:
            written = record.getMessage()
        except TypeError:
            written = f"{record.msg} {record.args}"
        assert [part for part in token_parts(token) if part in written] == [], written
        assert REDACTED in written


def test_gunicorn_opens_no_control_socket_shared_by_the_user(gunicorn):
    """No gunicorn.ctl in the user's runtime folder or home, where every gunicorn the
    user runs would share it."""
    assert list((gunicorn.folder / "run").iterdir()) == []
    assert not (gunicorn.folder / "home" / ".gunicorn").exists()


def test_a_control_socket_is_the_instances_own_where_asked(tmp_path):
    port = free_port()
    control = tmp_path / "dispatcher.ctl"
    env = {
        **os.environ,
        "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance"),
        "DISPATCHER_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "DISPATCHER_CONTROL_SOCKET": str(control),
    }
    args = [sys.executable, "-m", "gunicorn", "-c", "python:dispatcher.gunicorn_config"]
    with GunicornServer([*args, "dispatcher.wsgi:app"], env, tmp_path / "log", port):
        # The master opens it beside its workers, not necessarily before they answer.
        deadline = time.monotonic() + 15
        while not control.is_socket() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert control.is_socket()
