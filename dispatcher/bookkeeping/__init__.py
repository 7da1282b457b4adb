"""The assignment bookkeeping: one interface, a local and a Cistern backend."""

from flask import current_app

from ..errors import ConfigurationError
from .base import Bookkeeper
from .cistern import CisternBookkeeper
from .local import LocalBookkeeper

__all__ = ["BACKENDS", "Bookkeeper", "CisternBookkeeper", "LocalBookkeeper", "backend", "init_app"]

EXTENSION = "dispatcher.bookkeeping"
# ASSIGNMENT_BACKEND -> the backend's class
BACKENDS: dict[str, type[Bookkeeper]] = {"local": LocalBookkeeper, "cistern": CisternBookkeeper}


def init_app(app) -> None:
    """Build the backend ASSIGNMENT_BACKEND names.

    :raises ConfigurationError: an unknown backend.
    """
    name = app.config["ASSIGNMENT_BACKEND"]
    if name not in BACKENDS:
        raise ConfigurationError(f"ASSIGNMENT_BACKEND={name!r} is not one of {', '.join(BACKENDS)}")
    app.extensions[EXTENSION] = BACKENDS[name].from_config(app.config)


def backend() -> Bookkeeper:
    """The bookkeeping backend of the current app."""
    return current_app.extensions[EXTENSION]
