"""The login throttle: at most LOGIN_FAILURE_LIMIT refused logins per username and client.

An attempt is counted before its password is checked, by one atomic increment in the
throttle's store (``limits``, in memory or in Redis for every worker and host), so that
concurrent guesses cannot all pass the check before any is counted; an attempt that
turns out not to be a refusal (a success, a malformed body) gives its count back.

While the shared store fails (with RATELIMIT_IN_MEMORY_FALLBACK_ENABLED), each process
counts in its own memory, and asks the store again (``limits``' own health check) at the
first attempt once RETRY_SECONDS have passed since it last failed: once it answers,
counting is shared again, rather than every worker allowing the limit on its own.
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
# Seconds between two tries of a shared store that failed: at most one attempt in that
# time waits on a store that does not answer, and none is counted apart once it is back.
RETRY_SECONDS = 1.0


class LoginThrottle:
    """Refused logins counted per username and client, in fixed windows: in the shared
    store, or in this process's memory while that fails (``memory_fallback``).

    ``clock`` (seconds, monotonic) times the retries of the shared store; tests move it.
    """

    def __init__(self, limit: str, storage_uri: str, memory_fallback: bool, clock=time.monotonic):
        self.item = parse(limit)
        self.shared = FixedWindowRateLimiter(storage_from_string(storage_uri))
        self.fallback = FixedWindowRateLimiter(MemoryStorage()) if memory_fallback else None
        self.clock = clock
        self._failed_at = None  # when the shared store last failed; None while it works

    def _limiter(self) -> FixedWindowRateLimiter:
        """Where the next attempt counts: the shared store, unless it failed less than
        RETRY_SECONDS ago, or fails its health check now."""
        if self._failed_at is None:
            return self.shared
        if self.clock() - self._failed_at < RETRY_SECONDS:
            return self.fallback
        if self.shared.storage.check():
            log.warning("login throttle store reachable again: counting in it")
            self._failed_at = None
            return self.shared
        self._failed_at = self.clock()
        return self.fallback

    def _counted(self, limiter: FixedWindowRateLimiter, work):
        """``work(limiter)`` and the limiter that did it: the memory fallback instead when
        ``limiter`` is the shared store and it fails."""
        try:
            return work(limiter), limiter
        except Exception as error:
            self._failed(limiter, error)
            return work(self.fallback), self.fallback

    def _failed(self, limiter: FixedWindowRateLimiter, error: Exception) -> None:
        """``limiter`` failed with ``error``: from now on count in memory, for at least
        RETRY_SECONDS.

        :raises Exception: ``error``, where there is nothing to fall back on.
        """
        if self.fallback is None or limiter is self.fallback:
            raise error
        log.warning("login throttle store unreachable: counting in memory")
        self._failed_at = self.clock()

    @contextmanager
    def attempt(self, username: str, client: str):
        """Count a login attempt for the block it runs; a block that raises
        ForbiddenError (a refused login) keeps its count, any other gives it back.

        :raises TooManyRequestsError: the limit is spent; the password is not checked.
        """
        ids = ("login", client, username)
        allowed, limiter = self._counted(
            self._limiter(), lambda limiter: limiter.hit(self.item, *ids)
        )
        if not allowed:
            self._give_back(limiter, ids)  # the refused attempt itself is no guess
            reset, _ = self._counted(
                limiter, lambda limiter: limiter.get_window_stats(self.item, *ids)
            )
            retry_after = max(1, math.ceil(reset.reset_time - time.time()))
            raise TooManyRequestsError("Too many failed logins: try again later", retry_after)
        try:
            yield
        except ForbiddenError:
            raise
        except BaseException:
            self._give_back(limiter, ids)
            raise
        self._give_back(limiter, ids)

    def _give_back(self, limiter: FixedWindowRateLimiter, ids: tuple) -> None:
        """Take back a count from the store that holds it; from a shared store that fails
        meanwhile it stays (one refusal too many, never one too few)."""
        key, expiry = self.item.key_for(*ids), self.item.get_expiry()
        try:
            limiter.storage.incr(key, expiry, amount=-1)
        except Exception as error:
            self._failed(limiter, error)


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
