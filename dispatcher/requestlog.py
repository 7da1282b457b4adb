"""One log line per request, under a request id that the answer carries in X-Request-ID,
and its count and duration in /metrics.

The line holds the request id, the caller, the method, the endpoint, the path (never
the query string, where ``?auth_token=`` may be), the status and the duration: never a
body, a password or a token. ``LOG_FORMAT`` picks plain ``key=value`` text or JSON;
either way every record of the dispatcher's loggers carries the request id.
"""

import logging
import re
import time
import uuid
from urllib.parse import quote

from flask import Flask, g, has_request_context, request
from flask_login import user_loaded_from_request
from pythonjsonlogger.json import JsonFormatter

from . import metrics
from .errors import ConfigurationError

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept when it is one token of these characters; anything else
# (spaces, quotes, line breaks that could forge log lines) gets a new id instead.
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
FORMATS = ("plain", "json")

log = logging.getLogger("dispatcher.requests")

# The fields of a request's line, in order.
FIELDS = ("request_id", "caller", "method", "endpoint", "path", "status", "duration_ms", "remote")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def install_record_factory() -> None:
    """Give every log record the id of the request it is logged in (``-`` outside one).

    A record factory rather than a filter: a filter on the dispatcher's handler misses
    the handlers a host program installs, and one on a logger misses its children.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_request_id", False):
        return

    def make_record(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return record

    make_record.adds_request_id = True
    logging.setLogRecordFactory(make_record)


def formatter(kind: str) -> logging.Formatter:
    """The formatter of ``LOG_FORMAT``: ``plain`` or ``json``."""
    if kind == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(PLAIN_FORMAT)


def current_request_id() -> str | None:
    """The id of the request being served; None outside a request."""
    return g.get("request_id") if has_request_context() else None


def _begin() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _ACCEPTED_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _remember_caller(app: Flask, user, **extra) -> None:
    # Flask-Login sends this when a request's token has loaded its user. Asking
    # current_user at the end instead would check a token then, a database query
    # in every public request.
    g.caller = getattr(user, "username", None)


def _caller() -> str:
    return _escaped(g.get("caller") or "-")


def _escaped(text: str) -> str:
    # No line break or other control character reaches a plain line, where it
    # could start a forged one.
    return text.encode("unicode_escape").decode("ascii")


def elapsed_seconds() -> float | None:
    """How long the request being served has taken so far; None before it began."""
    started = g.get("request_started")
    return None if started is None else time.perf_counter() - started


def _finish(response):
    request_id = g.request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = request_id
    elapsed = elapsed_seconds()
    duration_ms = None if elapsed is None else round(elapsed * 1000, 2)
    fields = {
        "request_id": request_id,
        "caller": _caller(),
        "method": request.method,
        "endpoint": request.endpoint or "unmatched",
        # Percent-encoded as it came (spaces, line breaks), never the query string.
        "path": quote(request.path, safe="/:@!$&'()*+,;=-._~"),
        "status": response.status_code,
        "duration_ms": duration_ms,
        "remote": request.remote_addr or "-",
    }
    # request_id is the record's own (install_record_factory); extra may not set it.
    extra = {key: value for key, value in fields.items() if key != "request_id"}
    log.info(" ".join(f"{key}={fields[key]}" for key in FIELDS[1:]), extra=extra)
    metrics.count_request(request.endpoint, request.method, response.status_code, elapsed)
    return response


def init_app(app: Flask) -> None:
    """Log every request of ``app`` (``REQUEST_LOG``), in ``LOG_FORMAT``, and count it.

    :raises ConfigurationError: an unknown LOG_FORMAT.
    """
    kind = app.config["LOG_FORMAT"]
    if kind not in FORMATS:
        raise ConfigurationError(f"LOG_FORMAT={kind!r} is not one of {', '.join(FORMATS)}")
    app.before_request(_begin)
    app.after_request(_finish)
    user_loaded_from_request.connect(_remember_caller, app)
    # The request lines are INFO: kept at a higher LOG_LEVEL too, unless turned off.
    log.setLevel(logging.INFO if app.config["REQUEST_LOG"] else logging.WARNING)
