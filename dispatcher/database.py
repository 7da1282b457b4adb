"""The database schema, made and changed by the Alembic migrations in migrations/."""

import flask_migrate
from alembic.migration import MigrationContext
from flask import current_app
from sqlalchemy import MetaData, Table, inspect

from . import fingerprints
from .extensions import db

# The first migration: the schema the dispatcher made with create_all before it had
# migrations. A database with those tables and no Alembic version is at this revision.
BASELINE = "0001"


def current() -> str | None:
    """The revision the database is at; None for a database without one."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(revision: str = "head", sql: bool = False) -> bool:
    """Bring the schema to ``revision``; True if the database was one made before the
    migrations, which is first recorded as being at ``BASELINE``.

    The database then knows the fingerprints of the app's secrets, if it did not.

    :raises ConfigurationError: the app's secrets differ from the database's.
    """
    adopted = not sql and current() is None and inspect(db.engine).has_table("users")
    if adopted:
        flask_migrate.stamp(revision=BASELINE)
    flask_migrate.upgrade(revision=revision, sql=sql)
    if not sql:
        fingerprints.check(current_app.config)
    return adopted


def drop() -> None:
    """Drop every table of the dispatcher, Alembic's record of the revision included."""
    db.drop_all()
    Table("alembic_version", MetaData()).drop(db.engine, checkfirst=True)
