"""The tokens this process has verified, so that a repeated token costs neither the
signature check nor the database: bounded in number and age, and emptied at once, for a
user or whole, by every change that ends or narrows a token (``revocation``).

An entry is only kept if no emptying happened while it was being verified (the
``epoch`` taken before the database was read): a verification that read the user before
a revocation and finished after it never lands in the cache.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """The user a verified token stands for, as a request sees it (``current_user``):
    what a view reads of its caller, taken once from the database."""

    id: int
    username: str
    fs_uniquifier: str
    roles: frozenset[str]

    # What Flask-Login asks of a user.
    is_authenticated = True
    is_active = True
    is_anonymous = False
    active = True

    def get_id(self) -> str:
        return self.fs_uniquifier

    def has_role(self, role) -> bool:
        return (role if isinstance(role, str) else role.name) in self.roles


class VerifiedTokens:
    """token -> ``Caller``: at most ``size`` tokens, each for at most ``seconds`` and never
    past its token's own end; the least recently used goes first. Thread-safe.
    ``changed`` hears the number of tokens kept after each change (for a gauge)."""

    def __init__(self, size: int, seconds: float, changed: Callable[[int], None] | None = None):
        self.size = size
        self.seconds = seconds
        self._entries: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._epoch = 0
        self._changed = changed or (lambda count: None)

    def __len__(self) -> int:
        return len(self._entries)

    def epoch(self) -> int:
        """Take this before reading the database for a token, and give it to ``put``."""
        return self._epoch

    def get(self, token: str) -> Caller | None:
        with self._lock:
            found = self._entries.get(token)
            if found is None:
                return None
            caller, deadline = found
            if time.monotonic() >= deadline:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return caller

    def put(self, token: str, caller: Caller, seconds_left: float, epoch: int) -> bool:
        """Keep ``caller`` for ``token`` for at most ``seconds_left`` (the token's own time
        left); whether it was kept: not if the cache was emptied since ``epoch``."""
        seconds = min(self.seconds, seconds_left)
        with self._lock:
            if epoch != self._epoch or seconds <= 0:
                return False
            self._entries[token] = (caller, time.monotonic() + seconds)
            self._entries.move_to_end(token)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            count = len(self._entries)
        self._changed(count)
        return True

    def forget_user(self, user_id: int) -> None:
        """Drop every token of the user."""
        with self._lock:
            self._epoch += 1
            for token in [t for t, (c, _) in self._entries.items() if c.id == user_id]:
                del self._entries[token]
            count = len(self._entries)
        self._changed(count)

    def clear(self) -> None:
        """Drop every token."""
        with self._lock:
            self._epoch += 1
            self._entries.clear()
        self._changed(0)
