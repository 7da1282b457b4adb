"""What an assign or a release decides by and an admin changes at runtime (the quota
rules, the pools' overrides), kept by each process until it changes.

Each such table has a revision (``table_revisions``), raised in the transaction of every
change of it (``bump``). The statements of an assign and a release read the revisions
they need beside their own columns (``current``), in their own snapshot; a process keeps
what it read of a table with the revision a statement had seen before the read
(``Kept``), and reads the table again only when a statement sees another revision. So
what an admin sets binds the next decision in any process, as a read at every decision
would, without that read.
"""

from collections.abc import Callable

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from .extensions import db
from .models import PoolOverride, QuotaRule, TableRevision

EXTENSION = "dispatcher.revisions"
QUOTA_RULES = QuotaRule.__tablename__
POOL_OVERRIDES = PoolOverride.__tablename__

_REVISIONS = TableRevision.__table__


def _of(table: str):
    return (
        select(func.coalesce(func.max(_REVISIONS.c.revision), 0))
        .where(_REVISIONS.c.table_name == table)
        .scalar_subquery()
    )


def current(table: str):
    """The revision of ``table`` as a column of a statement, ``<table>_revision`` (0
    before its first change)."""
    return _of(table).label(f"{table}_revision")


def still(table: str, revision):
    """A condition of a statement: the revision of ``table`` is ``revision`` (a value or
    a bound parameter) in the statement's snapshot."""
    return _of(table) == revision


def read(table: str) -> int:
    """The revision of ``table`` now, in the session's transaction."""
    return db.session.execute(select(current(table))).scalar_one()


def bump(table: str) -> None:
    """Raise the revision of ``table``, in the transaction of its change: the two commit
    together. Concurrent changes of one table wait for each other here."""
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_REVISIONS).values(table_name=table, revision=1)
    statement = statement.on_conflict_do_update(
        index_elements=[_REVISIONS.c.table_name],
        set_={"revision": _REVISIONS.c.revision + 1},
    )
    db.session.execute(statement)


class Kept:
    """What this process (its app) read of ``table`` by ``read``, a callable that reads it
    whole, with the revision a statement had seen before the read. ``read`` gives plain
    values, not the session's objects: they outlive the transaction."""

    def __init__(self, table: str, read: Callable[[], object]):
        self.table = table
        self._read = read

    def _state(self) -> dict:
        return current_app.extensions.setdefault(EXTENSION, {})

    def at(self, revision: int):
        """The table as of ``revision``, which a statement of this transaction saw: what
        is kept if it was read at that revision, else read now, and kept."""
        kept = self._state().get(self.table)
        if kept is not None and kept[0] == revision:
            return kept[1]
        value = self._read()
        # Read after the statement that saw ``revision``: a change committed in between
        # is in the value, kept under the older revision, and costs one more read later,
        # never a stale value kept as current.
        self._state()[self.table] = (revision, value)
        return value

    def guess(self) -> int:
        """The revision of what is kept, to decide by before a statement has seen the
        table's (read, with the table, when nothing is kept yet). The decision holds only
        if the statement that acts on it sees the same revision."""
        kept = self._state().get(self.table)
        if kept is not None:
            return kept[0]
        revision = read(self.table)
        self.at(revision)
        return revision
