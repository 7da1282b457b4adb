"""Extension objects, unbound: ``create_app`` binds them to an app."""

import re
from pathlib import Path

from flask_migrate import Migrate
from flask_security import Security
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.exc import InvalidatePoolError

from . import clock

# Constraint names as PostgreSQL gives them by default, so that the databases made
# before the migrations existed and those made by them agree, and a migration can
# name a constraint on SQLite too.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}
MIGRATIONS = Path(__file__).with_name("migrations")

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
security = Security()
migrate = Migrate(directory=str(MIGRATIONS), render_as_batch=True, compare_type=True)


# Where the pool's record of a connection notes when it came back to the pool, and
# whether its last checkout pinged it (what harness/round_trips.py counts).
RETURNED_AT = "dispatcher_returned_at"
PINGED = "dispatcher_pinged"
# Where a connection notes that its transaction has sent something but a read: a SELECT
# that sends no NOTIFY (which its commit would deliver).
WROTE = "dispatcher_wrote"
_READ = re.compile(r"\s*SELECT\b(?!.*\bpg_notify\s*\()", re.IGNORECASE | re.DOTALL)


def init_app(app) -> None:
    """Bind the database and migrations; ``auth.init_app`` binds ``security``."""
    db.init_app(app)
    migrate.init_app(app, db)
    idle = app.config.get("DATABASE_PING_IDLE_SECONDS")
    with app.app_context():
        note_writes(db.engine)
        if idle is not None:
            ping_when_idle(db.engine, float(idle))


def note_writes(engine) -> None:
    """Note on each connection whether its transaction has sent anything but a SELECT
    (a SAVEPOINT, a CTE that writes and a ``WITH`` that only reads alike), for
    ``nothing_written``. A statement sent in autocommit is committed as it ends: nothing
    of it is left to roll back."""

    @event.listens_for(engine, "before_cursor_execute")
    def sent(connection, _cursor, statement, *_) -> None:
        if _READ.match(statement):
            return
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            connection.info[WROTE] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def ended(connection) -> None:
        if not connection.invalidated:  # a lost connection's record starts afresh
            connection.info.pop(WROTE, None)

    @event.listens_for(engine, "checkin")
    def returned(_dbapi_connection, record) -> None:
        record.info.pop(WROTE, None)  # ended without either, by the pool's reset


def nothing_written() -> bool:
    """Whether the session's transaction has written nothing, sent or waiting to be
    flushed: a use case refused after reads alone may record why in the same transaction
    (its reads and locks end with the commit as with a rollback), two round trips fewer
    than a rollback and a new transaction."""
    session = db.session()  # the request's own, behind the scoped proxy
    if session.new or session.dirty or session.deleted:
        return False
    return not session.in_transaction() or not session.connection().info.get(WROTE, False)


def ping_when_idle(engine, idle: float) -> None:
    """Check a pooled connection with a ping before it is used again only when it has
    been idle in the pool for more than ``idle`` seconds. One that fails the ping drops
    every connection the pool made before it (the server went away: they are as dead),
    and the pool connects anew.

    A connection busy a moment ago is all but certainly alive, and pinging it at each
    checkout (``pool_pre_ping``) costs each request a round trip. Should the server go
    away meanwhile anyway, the request that meets the dead connection fails (503) and the
    pool drops every connection it made before.
    """

    @event.listens_for(engine, "checkin")
    def returned(_dbapi_connection, record) -> None:
        record.info[RETURNED_AT] = clock.now()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection, record, _proxy) -> None:
        since = record.info.pop(RETURNED_AT, None)
        # New, or back in the pool only a moment ago: used as it is.
        record.info[PINGED] = since is not None and (clock.now() - since).total_seconds() > idle
        if not record.info[PINGED]:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise InvalidatePoolError(f"the pooled connection failed its ping: {exc}") from exc
