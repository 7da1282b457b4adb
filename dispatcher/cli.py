"""The ``dispatcher`` command: serve the API, manage its database and its users."""

import functools
import os
import re

import click
import flask_migrate
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext
from sqlalchemy.exc import OperationalError
from werkzeug.serving import WSGIRequestHandler, run_simple

from . import auth, clouds, database, operations
from .errors import DispatcherError
from .extensions import db
from .models import AGENT, ROLES

DEMO_USER = "demo"
_TOKEN_IN_QUERY = re.compile(r"(auth_token=)[^&\s]*")


class RedactingRequestHandler(WSGIRequestHandler):
    """The development server's own lines, with ``?auth_token=`` values hidden."""

    def log_request(self, code="-", size="-"):
        """Nothing: the dispatcher logs every request itself, with its request id."""

    def log(self, type, message, *args):  # noqa: A002 (werkzeug's signature)
        super().log(type, _redact(message), *(_redact(arg) for arg in args))


def _redact(value):
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", value) if isinstance(value, str) else value


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
        except OperationalError as exc:
            # The driver's first line says what failed (refused, unknown host, bad
            # password) and never the password itself.
            reason = str(exc.orig or exc).strip().splitlines()[0]
            raise click.ClickException(f"cannot use the database: {reason}") from None

    return wrapper


def _show_generated_password(username: str, password: str) -> None:
    # Shown once on the terminal, on purpose: never through the logger.
    click.echo(f"created user {username!r}; its password, shown only this once: {password}")


def bootstrap() -> None:
    """Make a fresh installation usable: the schema, the roles and a first admin."""
    database.upgrade()
    generated = auth.bootstrap_admin(os.environ.get("DISPATCHER_ADMIN_PASSWORD"))
    if generated:
        _show_generated_password(auth.BOOTSTRAP_ADMIN, generated)


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


@click.command("init-db")
@with_appcontext
@service_errors
def init_db_command():
    """Bring the schema up to date (as `db upgrade`) and create the roles; rows are kept."""
    database.upgrade()
    auth.ensure_roles()
    click.echo(f"database ready at revision {database.current()}: tables and roles admin, agent")


@click.command("reset-db")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
@service_errors
def reset_db_command(yes):
    """Drop every table and create them anew: all users and tokens are lost."""
    if not yes:
        click.confirm(
            f"Drop every table of {db.engine.url.render_as_string(hide_password=True)}?",
            abort=True,
        )
    database.drop()
    database.upgrade()
    auth.ensure_roles()
    click.echo("database reset: empty tables and roles admin, agent")


@click.command("populate-db")
@click.option("--password", default=None, help="Password of the demo user [default: generated].")
@with_appcontext
@service_errors
def populate_db_command(password):
    """Create the roles and a demo user `demo` with role agent."""
    database.upgrade()
    auth.ensure_roles()
    try:
        auth.get_user(DEMO_USER)
        click.echo(f"user {DEMO_USER!r} exists already; nothing changed")
        return
    except DispatcherError:
        pass
    generated = None if password else auth.generate_password()
    auth.create_user(DEMO_USER, password or generated, roles=(AGENT,))
    if generated:
        _show_generated_password(DEMO_USER, generated)
    else:
        click.echo(f"created user {DEMO_USER!r} with role {AGENT}")


@click.group("users")
def users_group():
    """Manage users, their roles and their tokens."""


@users_group.command("create")
@click.argument("username")
@click.option("--email", default=None, help="The user's email address (optional).")
@click.option(
    "--role", "roles", multiple=True, type=click.Choice(sorted(ROLES)), help="Repeat for more."
)
@click.password_option(help="The password [default: asked for, twice].")
@with_appcontext
@service_errors
def create_user_command(username, email, roles, password):
    """Create an active user."""
    auth.create_user(username, password, roles=roles, email=email)
    click.echo(f"created user {username!r} with roles {', '.join(roles) or '(none)'}")


@users_group.command("list")
@with_appcontext
def list_users_command():
    """List the users, their state and roles."""
    for user in auth.list_users():
        state = "active" if user.active else "inactive"
        roles = ",".join(sorted(role.name for role in user.roles)) or "-"
        click.echo(f"{user.username}\t{state}\t{roles}")


@users_group.command("activate")
@click.argument("username")
@with_appcontext
@service_errors
def activate_command(username):
    """Let the user in again."""
    auth.set_active(username, True)
    click.echo(f"user {username!r} activated")


@users_group.command("deactivate")
@click.argument("username")
@with_appcontext
@service_errors
def deactivate_command(username):
    """Keep the user out: no new token, and the tokens held stop working."""
    auth.set_active(username, False)
    click.echo(f"user {username!r} deactivated")


@users_group.command("add-role")
@click.argument("username")
@click.argument("role", type=click.Choice(sorted(ROLES)))
@with_appcontext
@service_errors
def add_role_command(username, role):
    """Give the user a role."""
    changed = auth.add_role(username, role)
    click.echo(f"user {username!r} {'now has' if changed else 'already had'} role {role}")


@users_group.command("remove-role")
@click.argument("username")
@click.argument("role", type=click.Choice(sorted(ROLES)))
@with_appcontext
@service_errors
def remove_role_command(username, role):
    """Take a role from the user."""
    changed = auth.remove_role(username, role)
    click.echo(f"user {username!r} {'no longer has' if changed else 'did not have'} role {role}")


@users_group.command("set-password")
@click.argument("username")
@click.password_option(help="The new password [default: asked for, twice].")
@with_appcontext
@service_errors
def set_password_command(username, password):
    """Change the user's password; the tokens the user holds keep working."""
    auth.set_password(username, password)
    click.echo(f"password of {username!r} changed")


@users_group.command("revoke-tokens")
@click.argument("username")
@with_appcontext
@service_errors
def revoke_tokens_command(username):
    """Invalidate every token the user holds."""
    auth.revoke_tokens(auth.get_user(username))
    click.echo(f"tokens of {username!r} revoked")


@click.group("db")
def db_group():
    """The database schema: upgrade it, and the migrations behind it (Alembic)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", help="Where to stop [default: the newest].")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@with_appcontext
@service_errors
def db_upgrade_command(revision, sql):
    """Create the schema and the roles, or bring them up to date; no row is lost.

    A database made before the migrations existed is recognised and upgraded in place.
    """
    before = None if sql else database.current()
    adopted = database.upgrade(revision, sql=sql)
    if sql:
        return
    if adopted:
        before = f"{database.BASELINE}, the schema made before migrations"
    # The rows the service cannot work without, as init-db makes them.
    auth.ensure_roles()
    click.echo(f"database at revision {database.current()} (was {before or 'empty'})")


@db_group.command("current")
@click.option("-v", "--verbose", is_flag=True, help="Also the revision's file and message.")
@with_appcontext
@service_errors
def db_current_command(verbose):
    """Show the revision the database is at (nothing for an empty database)."""
    flask_migrate.current(verbose=verbose)


@db_group.command("history")
@click.option("-r", "--rev-range", default=None, help="Only these revisions: [start]:[end].")
@click.option("-v", "--verbose", is_flag=True, help="Also each revision's file and date.")
@click.option(
    "-i", "--indicate-current", is_flag=True, help="Mark the revision the database is at."
)
@with_appcontext
@service_errors
def db_history_command(rev_range, verbose, indicate_current):
    """List the migrations the dispatcher ships, newest first."""
    flask_migrate.history(rev_range=rev_range, verbose=verbose, indicate_current=indicate_current)


@db_group.command("downgrade")
@click.argument("revision", default="-1")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@with_appcontext
@service_errors
def db_downgrade_command(revision, sql):
    """Take the schema back to REVISION [default: -1, the one before the current].

    What a later migration added is dropped, the values of its columns included.
    """
    flask_migrate.downgrade(revision=revision, sql=sql)


@db_group.command("stamp")
@click.argument("revision", default="head")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@click.option("--purge", is_flag=True, help="Forget the recorded revision first.")
@with_appcontext
@service_errors
def db_stamp_command(revision, sql, purge):
    """Record the database as being at REVISION [default: the newest]; run no migration."""
    flask_migrate.stamp(revision=revision, sql=sql, purge=purge)


@db_group.command("migrate")
@click.option("-m", "--message", default=None, help="What the new revision changes.")
@click.option("--rev-id", default=None, help="Its id, as 0003 [default: a random one].")
@with_appcontext
@service_errors
def db_migrate_command(message, rev_id):
    """Write the next migration from how the models differ from the database.

    It lands in the package's migrations, for review; nothing is written when the
    models did not change.
    """
    flask_migrate.migrate(message=message, rev_id=rev_id)


@click.command("ledger-sync")
@click.option("--cloud", "names", multiple=True, help="A cloud to sync [default: every cloud].")
@with_appcontext
@service_errors
def ledger_sync_command(names):
    """Record the VMs the clouds have and the ledger lacks; mark vanished ones faulty."""
    for cloud in [clouds.get(name) for name in names] or clouds.every():
        counts = operations.sync_ledger(cloud)
        click.echo(
            f"{cloud.name}: {counts['registered']} registered, {counts['faulty']} marked faulty"
        )


COMMANDS = (
    run_command,
    init_db_command,
    reset_db_command,
    populate_db_command,
    users_group,
    ledger_sync_command,
    db_group,
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
    from . import create_app

    return create_app()


def main() -> None:
    """Entry point of the ``dispatcher`` console script."""
    # Not Flask's FlaskGroup, which adds its -A/--app and -e/--env-file and every
    # command that an installed package registers with Flask. The ScriptInfo is what
    # with_appcontext builds the app from.
    dispatcher_group.main(prog_name="dispatcher", obj=ScriptInfo(create_app=_create_app))
