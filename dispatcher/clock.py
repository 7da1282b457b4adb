"""The dispatcher's one clock: every time it writes or compares is read here, so that a
test or a replay moves time (time-machine, or a clock of its own) instead of waiting."""

import datetime


def now() -> datetime.datetime:
    """Now, in UTC with its zone."""
    return datetime.datetime.now(datetime.UTC)
