"""The round trips an SQLAlchemy engine sends to its database, counted through its events:
each statement, BEGIN and COMMIT or ROLLBACK, and the pool's ping. The benchmarks profile
and replay them; the tests bound them."""

import re

import sqlalchemy

from dispatcher.extensions import PINGED


class Capture:
    """The statements the app's engine sends, grouped by transaction (BEGIN to COMMIT or
    ROLLBACK), and the pool's ping."""

    def __init__(self, engine):
        self.engine = engine
        self.transactions: list[dict] = []
        self.pings = 0
        self._current = None
        self._listeners = [
            ("before_cursor_execute", self._statement),
            ("begin", self._begin),
            ("commit", self._commit),
            ("rollback", self._rollback),
        ]

    def __enter__(self):
        for name, function in self._listeners:
            sqlalchemy.event.listen(self.engine, name, function)
        sqlalchemy.event.listen(self.engine.pool, "checkout", self._checkout)
        return self

    def __exit__(self, *exc):
        for name, function in self._listeners:
            sqlalchemy.event.remove(self.engine, name, function)
        sqlalchemy.event.remove(self.engine.pool, "checkout", self._checkout)

    def _checkout(self, _dbapi_connection, record, _proxy):
        # With pool_pre_ping every checkout pings the server first; else the app's own
        # listener (registered before this one) notes whether it pinged.
        pinged = getattr(self.engine.pool, "_pre_ping", False) or record.info.get(PINGED)
        self.pings += bool(pinged)

    def _begin(self, conn):
        # A connection in autocommit sends no BEGIN, nor COMMIT: its statements are each
        # a transaction of their own, however SQLAlchemy's own transaction wraps them.
        alone = conn is not None and _autocommit(conn)
        self._current = {"statements": [], "end": None, "alone": alone}
        self.transactions.append(self._current)

    def _statement(self, _conn, _cursor, statement, parameters, _context, _many):
        if self._current is None:  # outside a transaction (autocommit): one of its own
            self._begin(None)
            self._current.update(end="none", alone=True)
        self._current["statements"].append((statement, parameters))

    def _commit(self, _conn):
        if self._current is not None:
            self._current["end"] = "COMMIT"
        self._current = None

    def _rollback(self, _conn):
        if self._current is not None:
            self._current["end"] = "ROLLBACK"
        self._current = None

    def round_trips(self) -> int:
        """Statements, BEGINs and COMMITs/ROLLBACKs, and the pool's pings (one a checkout)."""
        return self.pings + sum(
            len(t["statements"]) + (0 if t["alone"] else 1 + (t["end"] in ("COMMIT", "ROLLBACK")))
            for t in self.transactions
        )

    def outline(self) -> list[str]:
        """Each round trip in order, its statement's first words."""
        lines = [f"ping x{self.pings}"] if self.pings else []
        for transaction in self.transactions:
            alone = transaction["alone"]
            lines += [] if alone else ["BEGIN"]
            lines += [first_words(statement) for statement, _ in transaction["statements"]]
            if not alone and transaction["end"] in ("COMMIT", "ROLLBACK"):
                lines.append(transaction["end"])
        return lines


def _autocommit(conn) -> bool:
    return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def first_words(statement: str) -> str:
    """What a statement does, in a few words: a statement of CTEs by the names of its
    CTEs and what each does first, then its main statement."""
    words = statement.split()
    if words[:1] == ["WITH"]:
        ctes, main = _ctes(" ".join(words[1:]))
        named = ", ".join(f"{name} AS ({' '.join(body.split()[:3])} ...)" for name, body in ctes)
        return f"WITH {named} {first_words(main)}"
    if words[:1] == ["SELECT"]:
        return "SELECT ... " + _main_from(statement)
    return " ".join(words[:3])


def _main_from(select: str) -> str:
    """``FROM <table>`` of a SELECT: its own, not a subquery's among its columns."""
    depth, tokens = 0, iter(re.findall(r"\(|\)|[^\s()]+", select))
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token, 0)
        if depth == 0 and token == "FROM":
            return f"FROM {next(tokens, '?')}"
    return "FROM ?"


def _ctes(text: str) -> tuple[list[tuple[str, str]], str]:
    """The CTEs of what follows a WITH, as ``(name, body)``, and the main statement."""
    ctes = []
    while True:
        found = re.match(r"\s*,?\s*(\w+)\s+AS\s+(?:MATERIALIZED\s+)?\(", text)
        if found is None:
            return ctes, text.strip()
        depth, at = 1, found.end()
        while depth and at < len(text):
            depth += {"(": 1, ")": -1}.get(text[at], 0)
            at += 1
        ctes.append((found[1], text[found.end() : at - 1]))
        text = text[at:]
