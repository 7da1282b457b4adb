"""What the dispatcher counts for Prometheus, and ``GET /metrics`` that shows it.

Requests by endpoint and status with their duration, calls to each cloud by method
with their duration and errors, and assigns and releases by outcome. Under gunicorn
every worker writes its figures to PROMETHEUS_MULTIPROC_DIR (set by
dispatcher/gunicorn_config.py) and /metrics adds them up, whichever worker answers.
"""

import functools
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
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from .errors import AuthenticationRequiredError, ForbiddenError
from .requestlog import elapsed_seconds
from .serializers import as_utc

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

# The token check: how each request's token was checked, and the tokens each worker keeps.
TOKEN_CHECKS = Counter(
    "dispatcher_token_checks",
    "Tokens checked, by where: cache (a verified token kept) or database.",
    ["source"],
)


@functools.cache
def _token_cache_entries() -> Gauge:
    # Made on first use, in a serving process: a gauge without labels opens its file under
    # PROMETHEUS_MULTIPROC_DIR when made, which a command's process may not have.
    return Gauge(
        "dispatcher_token_cache_entries",
        "Verified tokens a serving process keeps (per process under gunicorn).",
        multiprocess_mode="liveall",
    )


def token_cache_entries(count: int) -> None:
    """The number of verified tokens this process keeps now."""
    _token_cache_entries().set(count)


# The warm pools. The pool manager counts creations, failures and boot times in its own
# process (`dispatcher pools run --metrics-port`, or /metrics under `dispatcher run`);
# the VMs per pool and state come from the ledger, whichever process answers /metrics.
POOL_BOOT_SECONDS = Histogram(
    "dispatcher_pool_boot_duration_seconds",
    "Time from a pool VM's creation to the pass that found it running, by pool and cloud.",
    ["pool", "cloud"],
    buckets=(5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200),
)
POOL_ASSIGN_SECONDS = Histogram(
    "dispatcher_pool_assign_duration_seconds",
    "Time an assign by vm_type took to take a free VM of the pool (or find none), by pool.",
    ["pool"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
POOL_CREATIONS = Counter(
    "dispatcher_pool_creations",
    "VMs the pool manager created, by pool and cloud.",
    ["pool", "cloud"],
)
POOL_FAILURES = Counter(
    "dispatcher_pool_failures",
    "Failed listings and creations of the pool manager, by pool and cloud.",
    ["pool", "cloud"],
)
POOL_SPILLOVERS = Counter(
    "dispatcher_pool_spillovers",
    "Times a pool's VMs went to its next cloud because this one failed or backs off.",
    ["pool", "cloud"],
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
    body = generate_latest(registry) + generate_latest(_pool_registry())
    return Response(body, content_type=CONTENT_TYPE_LATEST)


class _PoolCollector:
    """The VMs of each pool in each state, read from the ledger at each scrape."""

    def collect(self):
        from . import pools
        from .bookkeeping import ledger

        gauge = GaugeMetricFamily(
            "dispatcher_pool_vms", "VMs of each warm pool, by state.", labels=["pool", "state"]
        )
        for spec in pools.every():
            for state, number in ledger.pool_totals(spec.name).items():
                gauge.add_metric([spec.name, state], number)
        yield gauge


class _CircuitCollector:
    """Each cloud's circuit breaker as this process sees it (the state is per process)."""

    def collect(self):
        from . import clouds

        gauge = GaugeMetricFamily(
            "dispatcher_cloud_circuit_open",
            "1 while the cloud's circuit is open in the process that answers (not asked).",
            labels=["cloud"],
        )
        for cloud in clouds.every():
            gauge.add_metric([cloud.name], 1 if cloud.circuit.seconds_left() > 0 else 0)
        yield gauge


class _ReconcileCollector:
    """The pool manager's last reconcile report of each cloud (RECONCILE_INTERVAL), read
    from the database at each scrape."""

    def collect(self):
        from .reconcile import KINDS, counts

        found = GaugeMetricFamily(
            "dispatcher_reconcile_findings",
            "Orphans, ghosts and mismatches the last reconcile report found, by cloud.",
            labels=["cloud", "kind"],
        )
        checked = GaugeMetricFamily(
            "dispatcher_reconcile_checked_timestamp_seconds",
            "When the last reconcile report listed the cloud (Unix time).",
            labels=["cloud"],
        )
        # Without the manager's reports, no query: /metrics answers with the database away.
        reported = counts.recorded() if current_app.config["RECONCILE_INTERVAL"] else []
        for row in reported:
            for kind in KINDS:
                found.add_metric([row.cloud, kind], getattr(row, kind))
            checked.add_metric([row.cloud], as_utc(row.checked_at).timestamp())
        yield found
        yield checked


def _pool_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PoolCollector())
    registry.register(_CircuitCollector())
    registry.register(_ReconcileCollector())
    return registry


def init_app(app: Flask) -> None:
    """Count the requests of ``app``; ``GET /metrics`` (api.metrics) shows the figures."""
    app.after_request(_finish)
