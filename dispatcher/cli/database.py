"""The database commands: the schema (``db``, ``init-db``, ``reset-db``), the demo user and
the ledger's sync with the clouds."""

import click
import flask_migrate
from flask.cli import with_appcontext

from .. import auth, database
from ..errors import DispatcherError
from ..extensions import db
from ..models import AGENT
from .base import service_errors, show_generated_password

DEMO_USER = "demo"


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
        show_generated_password(DEMO_USER, generated)
    else:
        click.echo(f"created user {DEMO_USER!r} with role {AGENT}")


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
