"""The dispatcher's one clock: every time it writes or compares is read here, so that a
test or a replay moves time (time-machine, or a clock of its own) instead of waiting."""

import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Where ``now`` comes from: the system's clock, unless a replay runs on a clock of its own.
_source: Callable[[], datetime.datetime] | None = None


def now() -> datetime.datetime:
    """Now, in UTC with its zone."""
    if _source is not None:
        return _source()
    return datetime.datetime.now(datetime.UTC)


@contextmanager
def running_on(source: Callable[[], datetime.datetime]) -> Iterator[None]:
    """Read every ``now`` from ``source`` (aware datetimes) meanwhile: a replay of a day
    runs the real code on a simulated clock. Process-wide: for one replay at a time."""
    global _source
    before, _source = _source, source
    try:
        yield
    finally:
        _source = before
