"""The login throttle: at most LOGIN_FAILURE_LIMIT refused logins per username and client.

An attempt is counted before its password is checked, by one atomic increment in the
throttle's store (``limits``, in memory or in Redis for every worker and host), so that
concurrent guesses cannot all pass the check before any is counted; an attempt that
turns out not to be a refusal (a success, a malformed body) gives its count back.
"""

import logging
import math
import time
from contextlib import contextmanager

from flask import current_app
from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from ..errors import ForbiddenError, TooManyRequestsError

log = logging.getLogger(__name__)

EXTENSION = "dispatcher.auth.throttle"


class LoginThrottle:
    """Refused logins counted per username and client, in fixed windows."""

    def __init__(self, limit: str, storage_uri: str, memory_fallback: bool):
        self.item = parse(limit)
        self.shared = FixedWindowRateLimiter(storage_from_string(storage_uri))
        self.fallback = FixedWindowRateLimiter(MemoryStorage()) if memory_fallback else None
        self._storage_down = False

    def _limiter(self) -> FixedWindowRateLimiter:
        return self.fallback if self._storage_down else self.shared

    def _counted(self, work):
        """``work(limiter)``; on the memory fallback once the shared store fails."""
        try:
            return work(self._limiter())
        except Exception:
            if self.fallback is None or self._storage_down:
                raise
            log.warning("login throttle store unreachable: counting in memory")
            self._storage_down = True
            return work(self._limiter())

    @contextmanager
    def attempt(self, username: str, client: str):
        """Count a login attempt for the block it runs; a block that raises
        ForbiddenError (a refused login) keeps its count, any other gives it back.

        :raises TooManyRequestsError: the limit is spent; the password is not checked.
        """
        ids = ("login", client, username)
        if not self._counted(lambda limiter: limiter.hit(self.item, *ids)):
            self._give_back(ids)  # the refused attempt itself is no guess
            reset = self._counted(lambda limiter: limiter.get_window_stats(self.item, *ids))
            retry_after = max(1, math.ceil(reset.reset_time - time.time()))
            raise TooManyRequestsError("Too many failed logins: try again later", retry_after)
        try:
            yield
        except ForbiddenError:
            raise
        except BaseException:
            self._give_back(ids)
            raise
        self._give_back(ids)

    def _give_back(self, ids: tuple) -> None:
        key, expiry = self.item.key_for(*ids), self.item.get_expiry()
        self._counted(lambda limiter: limiter.storage.incr(key, expiry, amount=-1))


def init_app(app) -> None:
    """The app's login throttle, from LOGIN_FAILURE_LIMIT and RATELIMIT_STORAGE_URI."""
    app.extensions[EXTENSION] = LoginThrottle(
        app.config["LOGIN_FAILURE_LIMIT"],
        app.config["RATELIMIT_STORAGE_URI"],
        app.config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"],
    )


def login_attempt(username: str, client: str):
    """``LoginThrottle.attempt`` of the current app."""
    return current_app.extensions[EXTENSION].attempt(username, client)
