"""The ``dispatcher`` command: serve the API and manage its database."""

import click
from flask import current_app
from flask.cli import FlaskGroup, routes_command, shell_command, with_appcontext
from werkzeug.serving import run_simple

from .extensions import db


def bootstrap(app) -> None:
    """Make a fresh installation usable: create the schema where it is missing."""
    with app.app_context():
        db.create_all()


@click.command("run")
@click.option("--host", default=None, help="Interface to listen on [default: HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: PORT, 5070].")
@with_appcontext
def run_command(host, port):
    """Serve the API with the built-in threaded server (gunicorn for production)."""
    app = current_app._get_current_object()
    bootstrap(app)
    host = host or app.config["HOST"]
    port = port or app.config["PORT"]
    click.echo(f"dispatcher: serving http://{host}:{port}/api/v1/")
    run_simple(host, port, app, threaded=True)


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the tables that do not exist yet; existing rows are kept."""
    db.create_all()
    click.echo("database schema ready")


COMMANDS = (run_command, init_db_command)


def init_app(app) -> None:
    """Attach the commands to ``app.cli`` (also reachable as ``flask --app wsgi ...``)."""
    for command in COMMANDS:
        app.cli.add_command(command)


def _create_app():
    from . import create_app

    return create_app()


def main() -> None:
    """Entry point of the ``dispatcher`` console script."""
    group = FlaskGroup(
        create_app=_create_app,
        add_default_commands=False,
        help="The dispatcher: one JSON API in front of a pool of clouds.",
    )
    group.add_command(routes_command)
    group.add_command(shell_command)
    group.main(prog_name="dispatcher")
