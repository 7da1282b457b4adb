"""The ``dispatcher`` command: serve the API, manage its database and its users."""

import logging

import click
from flask.cli import ScriptInfo

from ..errors import ConfigurationError
from .database import db_group, init_db_command, populate_db_command, reset_db_command
from .envfile import env_file_command
from .pools import pools_group
from .quotas import quotas_group
from .reconcile import ledger_sync_command, reconcile_command
from .serve import run_command
from .usage import usage_command
from .users import users_group
from .worker import worker_group

__all__ = ["COMMANDS", "init_app", "main", "users_group"]

COMMANDS = (
    run_command,
    init_db_command,
    reset_db_command,
    populate_db_command,
    users_group,
    ledger_sync_command,
    db_group,
    env_file_command,
    pools_group,
    quotas_group,
    reconcile_command,
    usage_command,
    worker_group,
)


def init_app(app) -> None:
    """Attach the commands to ``app.cli`` (also reachable as ``flask --app wsgi ...``)."""
    for command in COMMANDS:
        app.cli.add_command(command)


@click.group("dispatcher", commands=COMMANDS)
@click.version_option(package_name="dispatcher", message="%(prog)s %(version)s")
def dispatcher_group():
    """The dispatcher: one JSON API in front of a pool of clouds."""


def _create_app():
    from .. import create_app

    try:
        app = create_app()
    except ConfigurationError as exc:
        # One line naming the setting, not a traceback, and exit status 1.
        raise click.ClickException(str(exc)) from None
    if click.get_current_context().command is not run_command:
        # A command prints its result; the service's INFO lines would only repeat it.
        quiet = max(logging.WARNING, logging.getLogger("dispatcher").getEffectiveLevel())
        logging.getLogger("dispatcher").setLevel(quiet)
    return app


def main() -> None:
    """Entry point of the ``dispatcher`` console script."""
    # Not Flask's FlaskGroup, which adds its -A/--app and -e/--env-file and every
    # command that an installed package registers with Flask. The ScriptInfo is what
    # with_appcontext builds the app from.
    dispatcher_group.main(prog_name="dispatcher", obj=ScriptInfo(create_app=_create_app))
