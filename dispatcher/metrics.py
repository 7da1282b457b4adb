"""What the dispatcher counts for Prometheus, and ``GET /metrics`` that shows it.

Requests by endpoint and status with their duration, calls to each cloud by method
with their duration and errors, and assigns and releases by outcome. Under gunicorn
every worker writes its figures to PROMETHEUS_MULTIPROC_DIR (set by
dispatcher/gunicorn_config.py) and /metrics adds them up, whichever worker answers.
"""

import hmac
import ipaddress
import os
import time
from contextlib import contextmanager

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from .errors import AuthenticationRequiredError, ForbiddenError
from .requestlog import elapsed_seconds

# Labels take a bounded set of values: the endpoint name of a route (not the path,
# which holds ids), a known method, the status.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

REQUESTS = Counter(
    "dispatcher_http_requests",
    "HTTP requests answered, by endpoint, method and status.",
    ["endpoint", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "dispatcher_http_request_duration_seconds",
    "Time from a request's arrival to its answer, by endpoint and method.",
    ["endpoint", "method"],
)
CLOUD_CALL_SECONDS = Histogram(
    "dispatcher_cloud_call_duration_seconds",
    "Calls to a cloud's driver (one or more HTTP requests each), by cloud and method.",
    ["cloud", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CLOUD_CALL_ERRORS = Counter(
    "dispatcher_cloud_call_errors",
    "Calls to a cloud that failed, by cloud, method and error.",
    ["cloud", "method", "error"],
)
ASSIGNMENTS = Counter(
    "dispatcher_assignments",
    "Assigns and releases of VMs (dry runs excluded), by cloud, action and outcome.",
    ["cloud", "action", "outcome"],
)


@contextmanager
def cloud_call(cloud: str, method: str):
    """Time one call to ``cloud``; count it as an error of its kind if it raises."""
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        CLOUD_CALL_ERRORS.labels(cloud, method, type(exc).__name__).inc()
        raise
    finally:
        CLOUD_CALL_SECONDS.labels(cloud, method).observe(time.perf_counter() - started)


def count_assignment(cloud: str, action: str, outcome: str) -> None:
    """One assign or release of ``cloud`` ended with ``outcome`` (ok, or the HTTP status)."""
    ASSIGNMENTS.labels(cloud, action, outcome).inc()


def _finish(response):
    endpoint = request.endpoint or "unmatched"
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
    elapsed = elapsed_seconds()  # from requestlog's clock, started before any other hook
    if elapsed is not None:
        REQUEST_SECONDS.labels(endpoint, method).observe(elapsed)
    return response


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


def _check_access() -> None:
    """Let the scraper in: the bearer token METRICS_BEARER_TOKEN, or else a loopback client.

    :raises AuthenticationRequiredError: a token is set and the request lacks it.
    :raises ForbiddenError: no token is set and the client is not on loopback.
    """
    token = current_app.config.get("METRICS_BEARER_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise AuthenticationRequiredError(
                "Unauthorized: /metrics needs the bearer token METRICS_BEARER_TOKEN"
            )
    elif not _loopback(request.remote_addr):
        raise ForbiddenError(
            "Forbidden: /metrics answers loopback clients only, or set METRICS_BEARER_TOKEN"
        )


def exposition() -> Response:
    """Every figure in Prometheus' text format: of all workers under gunicorn.

    :raises AuthenticationRequiredError: a bearer token is set and missing here.
    :raises ForbiddenError: no token is set and the client is not on loopback.
    """
    _check_access()
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Count the requests of ``app``; ``GET /metrics`` (api.metrics) shows the figures."""
    app.after_request(_finish)
