"""``dispatcher run``: the API on the built-in threaded server, on a fresh install too."""

import os
import re

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.serving import WSGIRequestHandler, run_simple

from .. import auth, database
from .base import service_errors, show_generated_password

_TOKEN_IN_QUERY = re.compile(r"(auth_token=)[^&\s]*")


class RedactingRequestHandler(WSGIRequestHandler):
    """The development server's own lines, with ``?auth_token=`` values hidden."""

    def log_request(self, code="-", size="-"):
        """Nothing: the dispatcher logs every request itself, with its request id."""

    def log(self, type, message, *args):  # noqa: A002 (werkzeug's signature)
        super().log(type, _redact(message), *(_redact(arg) for arg in args))


def _redact(value):
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", value) if isinstance(value, str) else value


def bootstrap() -> None:
    """Make a fresh installation usable: the schema, the roles and a first admin."""
    database.upgrade()
    generated = auth.bootstrap_admin(os.environ.get("DISPATCHER_ADMIN_PASSWORD"))
    if generated:
        show_generated_password(auth.BOOTSTRAP_ADMIN, generated)


@click.command("run")
@click.option("--host", default=None, help="Interface to listen on [default: HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: PORT, 5070].")
@with_appcontext
@service_errors
def run_command(host, port):
    """Serve the API with the built-in threaded server (gunicorn for production).

    On an empty database it first creates the schema and a user `admin` (roles admin
    and agent) whose password is DISPATCHER_ADMIN_PASSWORD, or generated and shown once.
    """
    app = current_app._get_current_object()
    bootstrap()
    host = host or app.config["HOST"]
    port = port or app.config["PORT"]
    click.echo(f"dispatcher: serving http://{host}:{port}/api/v1/")
    run_simple(host, port, app, threaded=True, request_handler=RedactingRequestHandler)
