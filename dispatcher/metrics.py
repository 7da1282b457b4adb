"""What the dispatcher counts for Prometheus: the counters, histograms and gauges, the
helpers that count, and the collectors the packages register for ``GET /metrics``.

Requests by endpoint and status with their duration, calls to each cloud by method
with their duration and errors, assigns and releases by outcome, and the history's
other entries by action and outcome. Under gunicorn
every worker writes its figures to PROMETHEUS_MULTIPROC_DIR (set by
dispatcher/gunicorn_config.py) and /metrics adds them up, whichever worker answers.
Figures read at each scrape (a pool's VMs by state, say) come from a collector that
its package registers at ``init_app``. This module imports nothing of the dispatcher,
so that every module may count; /metrics itself is dispatcher/api/metrics.py.
"""

import functools
import time
from contextlib import contextmanager

from flask import Flask
from prometheus_client import Counter, Gauge, Histogram

EXTENSION = "dispatcher.metrics"

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
# The history's actions that dispatcher_assignments counts; the others have their own.
ASSIGNMENT_ACTIONS = frozenset({"assign", "release"})
HISTORY_ENTRIES = Counter(
    "dispatcher_history_entries",
    "Entries of the history other than assigns and releases (stops, extends, the pool "
    "manager's and the lease expiry's changes, reconcile fixes, lease webhook calls), by "
    "cloud, action and outcome.",
    ["cloud", "action", "outcome"],
)

# The token check: how each request's token was checked, and the tokens each worker keeps.
POOL_CHECKS = Counter(
    "dispatcher_pool_checks",
    "Ready checks of a pool's booting and free VMs, by pool and result (passed, failed).",
    ["pool", "result"],
)
POOL_REPLACEMENTS = Counter(
    "dispatcher_pool_replacements",
    "Free VMs a pool took out to be replaced, by pool and reason (check: failed its ready checks).",
    ["pool", "reason"],
)
QUOTA_REFUSALS = Counter(
    "dispatcher_quota_refusals",
    "Assigns and extends a quota refused (dry runs excluded), by the limit and the scope of "
    "the rule that set it.",
    ["limit", "scope"],
)
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
REQUEST_WAIT_SECONDS = Histogram(
    "dispatcher_request_wait_seconds",
    "Time from a request for VMs to their hand-over, by the request's priority.",
    ["priority"],
    buckets=(0, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 14400),
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
POOL_SCALE_DOWNS = Counter(
    "dispatcher_pool_scale_downs",
    "Free VMs a pool retired because it held more than its target for its scale_down_delay "
    "(or was draining), by pool.",
    ["pool"],
)
POOL_SIZE_FALLBACKS = Counter(
    "dispatcher_pool_size_fallbacks",
    "Times a pool's VMs went to the next size of a cloud because the cloud refused this "
    "size for capacity or quota, by pool, cloud and the size refused.",
    ["pool", "cloud", "size"],
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


def count_history_entry(cloud: str, action: str, outcome: str) -> None:
    """One entry of the history of ``cloud``, its change ended with ``outcome`` (ok, or the
    HTTP status): an assign or a release in dispatcher_assignments, any other action in
    dispatcher_history_entries."""
    counter = ASSIGNMENTS if action in ASSIGNMENT_ACTIONS else HISTORY_ENTRIES
    counter.labels(cloud, action, outcome).inc()


def count_request(endpoint: str | None, method: str, status: int, seconds: float | None) -> None:
    """One request answered with ``status``; ``endpoint`` None for a path no route serves,
    ``seconds`` None where its start is unknown."""
    endpoint = endpoint or "unmatched"
    method = method if method in METHODS else "other"
    REQUESTS.labels(endpoint, method, str(status)).inc()
    if seconds is not None:
        REQUEST_SECONDS.labels(endpoint, method).observe(seconds)


def register_collector(app: Flask, collector) -> None:
    """Show the figures of ``collector`` (a prometheus_client collector, asked at each
    scrape) on the /metrics of ``app``; a package registers its own at ``init_app``."""
    app.extensions.setdefault(EXTENSION, []).append(collector)


def collectors(app: Flask) -> list:
    """The collectors registered on ``app``, in the order of registration."""
    return list(app.extensions.get(EXTENSION, ()))
