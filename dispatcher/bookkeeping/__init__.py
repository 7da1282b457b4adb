"""The assignment bookkeeping: one interface, a local and a Cistern backend."""

from flask import current_app

from ..errors import ConfigurationError
from .base import Bookkeeper
from .cistern import CisternBookkeeper, cistern_session
from .local import LocalBookkeeper

__all__ = ["Bookkeeper", "CisternBookkeeper", "LocalBookkeeper", "backend", "init_app"]

EXTENSION = "dispatcher.bookkeeping"
BACKENDS = ("local", "cistern")


def cistern_url(config) -> str:
    """CISTERN_URL, or the original's CISTERN_HOST, CISTERN_PORT and CISTERN_API."""
    if config.get("CISTERN_URL"):
        return config["CISTERN_URL"]
    return f"http://{config['CISTERN_HOST']}:{config['CISTERN_PORT']}/api/{config['CISTERN_API']}"


def init_app(app) -> None:
    """Build the backend ASSIGNMENT_BACKEND names.

    :raises ConfigurationError: an unknown backend.
    """
    name = app.config["ASSIGNMENT_BACKEND"]
    if name == "local":
        bookkeeper = LocalBookkeeper()
    elif name == "cistern":
        bookkeeper = CisternBookkeeper(
            cistern_session(app.config["CISTERN_RETRIES"]),
            cistern_url(app.config),
            timeout=tuple(app.config["CISTERN_TIMEOUT"]),
        )
    else:
        raise ConfigurationError(f"ASSIGNMENT_BACKEND={name!r} is not one of {', '.join(BACKENDS)}")
    app.extensions[EXTENSION] = bookkeeper


def backend() -> Bookkeeper:
    """The bookkeeping backend of the current app."""
    return current_app.extensions[EXTENSION]
