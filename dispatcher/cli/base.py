"""What the dispatcher's commands share: service errors as one-line CLI errors."""

import functools

import click
from sqlalchemy.exc import OperationalError

from ..errors import ConfigurationError, DispatcherError
from ..extensions import db

# Who a change made from the command line was made by: a quota rule's ``updated_by``, a
# pool override's ``set_by`` and its history entries' caller.
COMMAND_LINE = "command line"


def service_errors(command):
    """Turn a service's DispatcherError, or a database that does not answer, into a
    one-line CLI error, exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DispatcherError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from None
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None
        except OperationalError as exc:
            # The driver's first line says what failed (refused, unknown host, bad
            # password) and never the password itself.
            reason = str(exc.orig or exc).strip().splitlines()[0]
            raise click.ClickException(f"cannot use the database: {reason}") from None

    return wrapper


def show_generated_password(username: str, password: str) -> None:
    # Shown once on the terminal, on purpose: never through the logger.
    click.echo(f"created user {username!r}; its password, shown only this once: {password}")
