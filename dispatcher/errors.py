"""The dispatcher's errors and the one place where any error becomes the JSON envelope."""

import logging

from flask import current_app, jsonify
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, default_exceptions
from werkzeug.http import HTTP_STATUS_CODES

from .shapes import INTEGER, OBJECT, TEXT, const, describes

log = logging.getLogger(__name__)


class DispatcherError(Exception):
    """A deliberate failure, answered with ``status`` and the message."""

    status = 500
    # More fields of the error's envelope, beside its message.
    details: dict = {}

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @property
    def outcome(self) -> str:
        """How the history records the failure: its HTTP status."""
        return str(self.status)


class InvalidRequestError(DispatcherError):
    """The request body or a parameter is malformed."""

    status = 400


class UnrecognizedActionError(DispatcherError):
    """A listing path names an action the dispatcher does not know."""

    status = 400


class AuthenticationRequiredError(DispatcherError):
    """The request carries no valid token."""

    status = 401


class ForbiddenError(DispatcherError):
    """The credentials are wrong, or the caller lacks the role."""

    status = 403


class QuotaExceededError(ForbiddenError):
    """A quota refuses the request: ``details["quota"]`` says which rule and limit, the
    limit's value and what is used of it."""

    def __init__(self, message: str, quota: dict):
        super().__init__(message)
        self.details = {"quota": quota}

    @property
    def outcome(self) -> str:
        return "quota"


class TooManyRequestsError(DispatcherError):
    """Too many attempts: the caller is told when to try again (Retry-After)."""

    status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class ConflictError(DispatcherError):
    """The request contradicts what exists (a user that exists already)."""

    status = 409


class AmbiguousHostnameError(ConflictError):
    """Several VMs have the hostname a request names."""

    def __init__(self, hostname: str, ids):
        super().__init__(
            f"nodes {', '.join(map(str, ids))} are all called {hostname}: give the node id"
        )


class IdempotencyKeyInUseError(ConflictError):
    """The request with this Idempotency-Key still runs: the caller is told when to ask again
    (Retry-After)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class IdempotencyKeyReusedError(DispatcherError):
    """The Idempotency-Key was used with another request (method, path or body)."""

    status = 422


class NotFoundError(DispatcherError):
    """A thing the request names does not exist."""

    status = 404


class UnknownCloudError(NotFoundError):
    """The URL names a cloud that is not in the pool."""


class NotSupportedError(DispatcherError):
    """The cloud's driver cannot do what was asked."""

    status = 501


class CloudError(DispatcherError):
    """The cloud failed or refused the call."""

    status = 502


class CloudTimeoutError(CloudError):
    """The cloud did not answer within the configured timeout."""

    status = 504


class CircuitOpenError(CloudError):
    """The cloud failed too often in a row: it is not asked until its pause is over."""

    status = 503

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class BookkeepingRejectedError(DispatcherError):
    """The bookkeeping backend (Cistern) refused the request, with its reason."""

    status = 400


class BookkeepingUnavailableError(DispatcherError):
    """The bookkeeping backend (Cistern) cannot be reached or did not answer in time."""

    status = 503


class PoolEmptyError(DispatcherError):
    """A warm pool has no free VM now: the caller is told when to try again (Retry-After)."""

    status = 503

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class ConfigurationError(ValueError):
    """The configuration cannot work; raised at start-up, never answered to a client.

    Its message is one line that names the setting or variable at fault.
    """


@describes(
    "Error",
    {
        "status": const("error"),
        "status_code": INTEGER,
        "status_short_message": TEXT,
        "status_long_message": TEXT,
        "message": TEXT,
    },
    # A quota's refusal: the rule, the limit (``key``), its value and what is used.
    {"quota": OBJECT},
)
def envelope(status: int, message: str) -> dict:
    """The original's error body for ``status``."""
    exception = default_exceptions.get(status)
    return {
        "status": "error",
        "status_code": status,
        "status_short_message": HTTP_STATUS_CODES.get(status, "Unknown Error"),
        "status_long_message": exception.description if exception else "",
        "message": message,
    }


def error_envelope(status: int, message: str):
    """Return the original's error body for ``status`` and the HTTP status itself."""
    return jsonify(envelope(status, message)), status


# Messages of the original kept for the routing failures clients already match on
# (a 405 is answered as the original's 501 "Not implemented", below).
HTTP_MESSAGES = {404: "Page not found"}


def handle_dispatcher_error(exc: DispatcherError):
    if exc.status >= 500:
        log.warning("%s: %s", type(exc).__name__, exc.message)
    body = jsonify({**envelope(exc.status, exc.message), **exc.details})
    return body, exc.status, getattr(exc, "headers", {})


def handle_http_exception(exc: HTTPException):
    if exc.code == 405:
        # The original answered 501 for any method a view did not implement.
        return error_envelope(501, "Not implemented")
    if exc.code == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return error_envelope(413, f"Request body too large: at most {limit} bytes")
    message = HTTP_MESSAGES.get(exc.code) or exc.description or HTTP_STATUS_CODES.get(exc.code)
    return error_envelope(exc.code, message)


def handle_database_error(exc: Exception):
    outage = isinstance(exc, OperationalError | PoolTimeoutError) or exc.connection_invalidated
    if not outage:
        return handle_unexpected_error(exc)  # a bug in a query, not an outage
    # The driver's own text may name the host and user; the class says enough.
    cause = type(getattr(exc, "orig", None) or exc).__name__
    log.warning("database unavailable: %s", cause)
    return error_envelope(503, "Database unavailable: try again later")


def handle_unexpected_error(exc: Exception):
    log.exception("unhandled error")
    return error_envelope(500, "Internal server error")


def init_app(app):
    """Register the handlers that turn every error into the envelope."""
    app.register_error_handler(DispatcherError, handle_dispatcher_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    # The connection pool drops its connections when one fails (and checks one idle for
    # a while before use): once the database is back, the next request gets a fresh one.
    for error in (DBAPIError, PoolTimeoutError):  # OperationalError is a DBAPIError
        app.register_error_handler(error, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected_error)
