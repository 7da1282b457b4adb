"""``dispatcher run``: the API on the built-in threaded server, on a fresh install too."""

import os
import socket
import threading

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.serving import WSGIRequestHandler, run_simple

from .. import auth, database, pools, settings_file, worker
from ..serving import redact, unreadable_answer
from .base import service_errors, show_generated_password


class RedactingRequestHandler(WSGIRequestHandler):
    """The development server's own lines with tokens hidden, and its answer to a
    request it cannot read in the JSON envelope, without repeating the request."""

    def log_request(self, code="-", size="-"):
        """Nothing: the dispatcher logs every request itself, with its request id."""

    def log(self, type, message, *args):  # noqa: A002 (werkzeug's signature)
        super().log(type, redact(message), *(redact(arg) for arg in args))

    def send_error(self, code, message=None, explain=None):
        """The envelope of ``code``; http.server's page would repeat the request line."""
        body = unreadable_answer(code)
        self.log_error("code %d, request not read", code)
        self.send_response(code)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(body)


def bootstrap() -> None:
    """Make a fresh installation usable: the schema, the roles and a first admin."""
    database.upgrade()
    generated = auth.bootstrap_admin(os.environ.get("DISPATCHER_ADMIN_PASSWORD"))
    if generated:
        show_generated_password(auth.BOOTSTRAP_ADMIN, generated)


@click.command("run")
@click.option(
    "--host", default=None, help="Interface to listen on [default: the HOST setting, 127.0.0.1]."
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port to listen on [default: the PORT setting, 5070].",
)
@with_appcontext
@service_errors
def run_command(host, port):
    """Serve the API with the built-in threaded server (gunicorn for production).

    On an empty database it first creates the schema and a user `admin` (roles admin
    and agent) whose password is DISPATCHER_ADMIN_PASSWORD, or generated and shown once.
    """
    app = current_app._get_current_object()
    host = host or app.config["HOST"]
    port = port or app.config["PORT"]
    _check_free(host, port)
    bootstrap()
    click.echo(f"dispatcher: instance folder {app.instance_path} (database, secrets)")
    settings = settings_file()
    click.echo(
        f"dispatcher: settings file {settings}"
        if settings
        else "dispatcher: no settings file (DISPATCHER_SETTINGS names none)"
    )
    _start_worker(app)
    auth.serve(app, single_process=True)
    click.echo(f"dispatcher: serving http://{host}:{port}/api/v1/")
    run_simple(host, port, app, threaded=True, request_handler=RedactingRequestHandler)


def _start_worker(app) -> None:
    """The worker in a thread of this one process, so that warm pools and leases work
    without `dispatcher worker run` beside; under gunicorn that command is the worker."""
    selected = pools.every()
    interval = app.config["POOLS_INTERVAL"]
    thread = threading.Thread(
        target=worker.run_forever,
        args=(app, selected, interval, threading.Event()),
        name="worker",
        daemon=True,
    )
    thread.start()
    click.echo(f"dispatcher: worker on {worker.describe(selected)}, a pass every {interval:g} s")


def _check_free(host: str, port: int) -> None:
    """Fail before anything else is done when the address cannot be listened on.

    :raises click.ClickException: the port is taken, or the host is not this machine's.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None
