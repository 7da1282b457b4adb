"""How a change that ends or narrows tokens reaches every serving process at once.

The change calls ``announce`` in its own transaction. On PostgreSQL that is
``pg_notify('dispatcher_tokens', '<user id>')``, which the server delivers at commit, and
only then, to every session listening on the channel. Each serving process (a gunicorn
worker, ``dispatcher run``) listens on a connection of its own, in a thread
(``Listener``), and drops the user's tokens from its cache of verified tokens.

The cache is used only while that can work: while a process's listener is not connected
(not yet started, reconnecting, its connection killed, silent past two heartbeats) or has
unread data waiting on its socket, the process checks every token against the database.
A listener that (re)connects empties the cache first, for what it may have missed.

On SQLite one process serves, ``dispatcher run``. It watches ``PRAGMA data_version`` on a
connection of its own (``FileWatch``): the number changes with every commit of any other
connection, another process's command included, and any change empties the cache.
Under gunicorn on SQLite (several processes) there is no cache.
"""

import logging
import os
import select
import sqlite3
import threading
import time

from sqlalchemy import text

from ..extensions import db
from .token_cache import VerifiedTokens

log = logging.getLogger(__name__)

CHANNEL = "dispatcher_tokens"
# Seconds between two round trips on the listening connection: a listener silent for two
# of them is taken for dead.
HEARTBEAT_SECONDS = 1.0
# Seconds between two tries to connect again.
RECONNECT_SECONDS = 1.0


def announce(user_id: int, cache: VerifiedTokens | None) -> None:
    """The tokens of the user changed: tell every process, with the change (in its
    transaction, so at its commit, and never if it is rolled back), and drop them from
    this process's ``cache`` now."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text("SELECT pg_notify(:channel, :user)"), {"channel": CHANNEL, "user": str(user_id)}
        )
    if cache is not None:
        cache.forget_user(user_id)


class Listener:
    """The PostgreSQL listener of one process: a thread that holds a connection listening
    on CHANNEL, started by the first request of the process (after gunicorn's fork)."""

    def __init__(self, engine, cache: VerifiedTokens):
        # Here, not at the top: psycopg comes with the `postgresql` extra only.
        import psycopg

        self._psycopg = psycopg
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        self._cache = cache
        self._lock = threading.Lock()
        self._pid = None
        self._stop = threading.Event()
        self._connection = None
        self._alive_at = 0.0

    def usable(self) -> bool:
        """Whether the cache may answer now: the listener is connected, alive and has
        nothing unread. Starts the listener on a process's first call."""
        if self._pid != os.getpid():
            self._start()
            return False
        connection = self._connection
        if connection is None or time.monotonic() - self._alive_at > 2 * HEARTBEAT_SECONDS:
            return False
        try:
            unread, _, _ = select.select([connection.pgconn.socket], [], [], 0)
        except (OSError, ValueError, self._psycopg.Error):
            return False
        return not unread

    def stop(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid, self._connection = os.getpid(), None
            thread = threading.Thread(target=self._run, name="token-listener", daemon=True)
            thread.start()

    def _run(self) -> None:
        args, kwargs = self._connect_args
        name = f"dispatcher-tokens:{os.getpid()}"
        psycopg = self._psycopg
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    *args, **{**kwargs, "application_name": name}, autocommit=True
                ) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._cache.clear()  # what was revoked while nobody listened
                    self._connection, self._alive_at = connection, time.monotonic()
                    self._listen(connection)
            except psycopg.Error as exc:
                if self._connection is not None:
                    log.warning("token listener: connection lost (%s)", type(exc).__name__)
            finally:
                self._connection = None
                self._cache.clear()
            self._stop.wait(RECONNECT_SECONDS)

    def _listen(self, connection) -> None:
        while not self._stop.is_set():
            for note in connection.notifies(timeout=HEARTBEAT_SECONDS):
                self._forget(note.payload)
            connection.execute("SELECT 1")
            self._alive_at = time.monotonic()

    def _forget(self, payload: str) -> None:
        try:
            self._cache.forget_user(int(payload))
        except ValueError:
            self._cache.clear()


class FileWatch:
    """The SQLite watch of ``dispatcher run``: ``PRAGMA data_version`` on a connection of
    its own, read before each use of the cache."""

    def __init__(self, path: str, cache: VerifiedTokens):
        self._connection = sqlite3.connect(path, check_same_thread=False)
        self._cache = cache
        self._lock = threading.Lock()
        self._version = None

    def usable(self) -> bool:
        with self._lock:
            try:
                version = self._connection.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                return False
            if version != self._version:
                self._cache.clear()
                self._version = version
        return True

    def stop(self) -> None:
        self._connection.close()
