"""One at a time across processes and hosts: the locks of the worker's jobs (a pool's
pass, the leases, the webhooks, the reconcile report), and of a reconcile's adoption into
a pool, which must not meet that pool's pass.

On PostgreSQL the holder keeps a session advisory lock (``pg_try_advisory_lock``), which
the server drops by itself when the holder's connection ends, a killed worker's too. On
SQLite, whose database is one file on one host, a lock file beside it does the same.
"""

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import current_app
from sqlalchemy import text

from .extensions import db


def advisory_key(schema: str, name: str) -> int:
    """The advisory lock called ``name``: a signed 64-bit number of the name and of the
    schema that holds the ledger, since advisory locks are per database and two
    dispatchers may share one database in two schemas."""
    digest = hashlib.blake2b(f"dispatcher-pool:{schema}:{name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


@contextmanager
def one_at_a_time(name: str) -> Iterator[bool]:
    """Hold the lock ``name`` (a pool's name, or a job's, which starts with a colon) while
    the block runs: True, or False when another process has it (the block then runs
    without it, and should skip its work)."""
    if db.engine.dialect.name == "postgresql":
        with _advisory_lock(name) as held:
            yield held
    else:
        with _file_lock(_lock_path(name)) as held:
            yield held


@contextmanager
def _advisory_lock(name: str) -> Iterator[bool]:
    with db.engine.connect() as connection:
        key = advisory_key(connection.execute(text("SELECT current_schema()")).scalar(), name)
        held = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        connection.commit()
        try:
            yield bool(held)
        finally:
            if held:
                # A session lock outlives transactions: give it back before the connection
                # returns to the pool, or the next user of the connection would hold it.
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()


def _lock_path(name: str) -> Path:
    database = db.engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(f"{database}.pool-{name}.lock")
    # A database in memory has no folder of its own: the instance folder, made if a fresh
    # install has none yet (private, as the dispatcher makes it for its secrets).
    folder = Path(current_app.instance_path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / f"pool-{name}.lock"


@contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def hold_until_commit(name: str) -> None:
    """Take the lock ``name`` for the rest of the session's transaction, waiting for it:
    whatever the transaction reads next, no other holder of the lock changes before it
    commits or rolls back (a quota's count and the assign it allows, per caller).

    On PostgreSQL a transaction advisory lock, keyed by the schema and the name. On
    SQLite, which has one writer at a time, the transaction becomes that writer now
    (BEGIN IMMEDIATE) rather than at its first write: the reads that follow are then
    those its write will follow.
    """
    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text(
                "SELECT pg_advisory_xact_lock("
                "hashtextextended('dispatcher:' || current_schema() || ':' || :name, 0))"
            ),
            {"name": name},
        )
        return
    connection = db.session.connection()
    if not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
