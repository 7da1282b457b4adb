"""The dispatcher's configuration classes, and the settings read from the environment.

Layers, later ones winning: a class below (``DISPATCHER_CONFIG`` picks it), the
Python file named by ``DISPATCHER_SETTINGS`` (or the original ``MIDDLEWARE_SETTINGS``),
then the environment variables of ``settings_from_env()``. Secrets never have a
default here.
"""

import os

from .errors import ConfigurationError

DUMMY_FARM = {
    "default": {"ENGINE": "dummy"},
    "fake_driver": {"ENGINE": "dummy"},
}


class Config:
    """Settings shared by every environment."""

    # Where `dispatcher run` listens: the original's port, loopback only by default.
    HOST = "127.0.0.1"
    PORT = 5070

    # None means a SQLite file in the instance folder (see dispatcher.create_app).
    SQLALCHEMY_DATABASE_URI = None
    # A pooled connection idle for longer than this many seconds is pinged before it is
    # used again (None: never); one in steady use is not (see extensions.ping_when_idle).
    DATABASE_PING_IDLE_SECONDS = 10

    # The cloud pool, in the original's CLOUD_FARM shape; `default` is used when a
    # URL names no cloud.
    CLOUD_FARM = DUMMY_FARM
    # Seconds a single request to a cloud may take before it answers 504.
    CLOUD_TIMEOUT = 30
    # How many times a call is tried when the cloud rejects the credentials (401).
    MAX_ITERATIONS = 3
    # A cloud that failed this many calls in a row (no answer, no connection, an error of
    # its own side) is not asked for CIRCUIT_SECONDS: its requests answer 503 at once.
    # Per process; 0 turns it off.
    CIRCUIT_FAILURES = 5
    CIRCUIT_SECONDS = 30
    # Seconds an image looked up by id is remembered (per process), to start VMs
    # without asking the cloud for the same image each time; 0 turns it off.
    IMAGE_CACHE_SECONDS = 300
    # Seconds the sizes (flavors) and locations of a cloud are remembered.
    SIZE_CACHE_SECONDS = 3600

    LOG_LEVEL = "INFO"
    # The dispatcher's log lines: "plain" text or "json", one object a line.
    LOG_FORMAT = "plain"
    # One line per request (request id, caller, endpoint, status, duration), at any
    # LOG_LEVEL; False turns it off.
    REQUEST_LOG = True
    # Failed logins (POST /api/v1/auth answered 403) allowed per username and client
    # address before the next attempt is a 429; Flask-Limiter's notation.
    LOGIN_FAILURE_LIMIT = "5 per minute"
    # Where the login throttle counts: this process's memory, or a shared store such
    # as redis://host:6379/0 (DISPATCHER_RATELIMIT_STORAGE_URI) so that every worker
    # and host counts together.
    RATELIMIT_STORAGE_URI = "memory://"
    # With the shared store down, count in memory rather than refuse every login.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    # Reverse proxies in front of the service whose X-Forwarded-For to trust, so that
    # the client address (login throttle, request log) is the client's, not the proxy's.
    TRUSTED_PROXIES = 0
    # No automatic OPTIONS answers (an empty HTML page, even without a token): the API
    # speaks no CORS, so OPTIONS is a method like any other a view lacks (501).
    PROVIDE_AUTOMATIC_OPTIONS = False
    # The largest request body read, in bytes: a larger one is a 413 before it is read,
    # whoever sends it (the login too). The API's bodies are a few hundred bytes.
    MAX_CONTENT_LENGTH = 1024 * 1024

    # /metrics answers loopback clients only; with a bearer token set (best from
    # DISPATCHER_METRICS_TOKEN), it answers whoever sends it, from anywhere, and nobody else.
    METRICS_BEARER_TOKEN = None

    # Who holds which VM: "local" (this database) or "cistern" (a Cistern service).
    ASSIGNMENT_BACKEND = "local"
    # Cistern's API root: CISTERN_URL, or the original's three settings.
    CISTERN_URL = None
    CISTERN_HOST = "127.0.0.1"
    CISTERN_PORT = 5071
    CISTERN_API = "v1"
    # (connect, read) seconds for one request to Cistern; then 503.
    CISTERN_TIMEOUT = (3.05, 10)
    # Extra tries of a request whose connection to Cistern could not be made.
    CISTERN_RETRIES = 2
    # Release destroys the VM after freeing it, as the original did; True keeps it.
    # A VM of a warm pool follows its pool's `release` instead.
    RELEASE_KEEPS_NODE = False

    # Warm pools, by vm_type: VMs started ahead of time so that an assign by type answers
    # at once (docs/configuration.md). Empty: no pools, no pool manager.
    POOLS = {}
    # Seconds between two passes of `dispatcher pools run` (and of the manager that
    # `dispatcher run` starts); also the Retry-After of an assign an empty pool refuses.
    POOLS_INTERVAL = 15
    # VMs the manager creates at once on one cloud.
    POOLS_CREATE_CONCURRENCY = 4
    # Ready checks a pass runs at once (each within its pool's timeout).
    POOLS_CHECK_CONCURRENCY = 32
    # A cloud that failed is left alone this many seconds, doubled after each failure in
    # a row up to POOLS_BACKOFF_MAX_SECONDS; its share goes to the pool's next cloud.
    POOLS_BACKOFF_SECONDS = 30
    POOLS_BACKOFF_MAX_SECONDS = 600
    # The levels of a pool at the end of each pass kept for its chart (GET
    # /api/v1/pools/<name>/levels): the newest this many; at POOLS_INTERVAL 15, six hours.
    POOLS_LEVELS_KEPT = 1440

    # The reconcile (docs/configuration.md): with destroy_orphans, an orphan the cloud made
    # less than this many seconds ago is left alone (it may be a VM being started).
    RECONCILE_GRACE_SECONDS = 600
    # Seconds between two reconcile reports of the pool manager, whose counts /metrics
    # shows; 0: none (each report lists every cloud's nodes once).
    RECONCILE_INTERVAL = 0

    # Leases (docs/configuration.md): seconds an assignment lasts when the assign names no
    # lease and its pool sets none; None: it never expires. MAX_LEASE caps any lease.
    DEFAULT_LEASE = None
    MAX_LEASE = None
    # The quota rules (docs/configuration.md, Quotas): a list of {"scope", "name"?, "pool"?,
    # limits}; admins' rules in the database take the place of these one by one.
    QUOTAS = None
    # Where the pool manager POSTs a lease's "expiring" and "released" events (a pool's
    # `webhook_url` wins for its VMs), signed with LEASE_WEBHOOK_SECRET (best from
    # DISPATCHER_LEASE_WEBHOOK_SECRET); "expiring" goes this many seconds before the end.
    LEASE_WEBHOOK_URL = None
    LEASE_WEBHOOK_SECRET = None
    LEASE_WARNING_SECONDS = 300
    # A webhook call that fails is tried again after LEASE_WEBHOOK_BACKOFF_SECONDS, doubled
    # after each failure, LEASE_WEBHOOK_ATTEMPTS times in all; each waits for at most
    # LEASE_WEBHOOK_TIMEOUT seconds.
    LEASE_WEBHOOK_ATTEMPTS = 5
    LEASE_WEBHOOK_BACKOFF_SECONDS = 30
    LEASE_WEBHOOK_TIMEOUT = 5

    # Requests for VMs that wait in line (docs/configuration.md, Requests): how long one
    # waits unless it says (REQUEST_DEFAULT_EXPIRY), at most (REQUEST_MAX_EXPIRY), and the
    # most VMs one may ask for.
    REQUEST_DEFAULT_EXPIRY = 3600
    REQUEST_MAX_EXPIRY = 24 * 3600
    REQUEST_MAX_VMS = 20
    # Where a request's request.ready, request.expired and request.failed go unless it
    # names its own webhook_url: signed with LEASE_WEBHOOK_SECRET, sent and tried again
    # like the lease webhooks.
    REQUEST_WEBHOOK_URL = None

    # What an hour of a VM costs, per cloud and size ("*": any other size), for the usage
    # reports: {"aws": {"t2.micro": 0.0116, "*": 0.05}}. A pool's cloud entry may set its
    # own price_per_hour (docs/configuration.md, Usage and cost).
    PRICES = {}

    # The most keys the tags of an assign, an extend or a request may have (docs/
    # configuration.md, Tags); at most 100.
    TAG_MAX = 10

    # Seconds the answer of a request sent with an Idempotency-Key is kept for its repeats.
    IDEMPOTENCY_TTL = 24 * 3600

    # Token authentication (Flask-Security-Too), where the original looked for tokens.
    SECURITY_TOKEN_AUTHENTICATION_HEADER = "X-Auth-Token"
    SECURITY_TOKEN_AUTHENTICATION_KEY = "auth_token"
    # Seconds a token stays valid after it is issued.
    SECURITY_TOKEN_MAX_AGE = 24 * 3600
    # Each serving process keeps up to TOKEN_CACHE_SIZE verified tokens for at most
    # TOKEN_CACHE_SECONDS (0: none), emptied at once by every revocation (docs/performance.md).
    TOKEN_CACHE_SIZE = 4096
    TOKEN_CACHE_SECONDS = 300
    SECURITY_PASSWORD_HASH = "argon2"
    SECURITY_PASSWORD_LENGTH_MIN = 8
    # No `users` and `roles` commands of Flask-Security-Too's: the dispatcher has its own.
    SECURITY_CLI_USERS_NAME = False
    SECURITY_CLI_ROLES_NAME = False


class DevelopmentConfig(Config):
    """The embedded default: `dispatcher run` with nothing else configured."""

    DEBUG = False


class ProductionConfig(Config):
    """Production: secrets and database come from the environment."""

    REQUIRE_SECRETS_FROM_ENV = True
    LOG_LEVEL = "WARNING"


CONFIGS = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
}


def check_number(
    config,
    name: str,
    least: int = 0,
    whole: bool = False,
    above: bool = False,
    unit: str = "",
    note: str = "",
) -> None:
    """The setting ``name`` is a number (``whole``: an integer; never a bool) from
    ``least``, or ``above`` it.

    :raises ConfigurationError: one line naming the setting, e.g. "CIRCUIT_SECONDS must
        be a number of seconds above 0" (``unit`` " of seconds"; ``note`` follows).
    """
    value = config.get(name)
    kinds = int if whole else int | float
    number = not isinstance(value, bool) and isinstance(value, kinds)
    if not number or not (value > least if above else value >= least):
        kind = "whole number" if whole else "number"
        raise ConfigurationError(
            f"{name} must be a {kind}{unit} {'above' if above else 'from'} {least}{note}"
        )


def config_class(name=None):
    """Return the configuration class named by ``name`` or ``DISPATCHER_CONFIG``.

    :raises ConfigurationError: for a name that is not one of ``CONFIGS``.
    """
    name = name or os.environ.get("DISPATCHER_CONFIG", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigurationError(
            f"DISPATCHER_CONFIG={name!r} is not one of {', '.join(sorted(CONFIGS))}"
        ) from None


# Environment variable -> configuration key, for what must not sit in a file.
ENVIRONMENT_SETTINGS = {
    "DATABASE_URL": "SQLALCHEMY_DATABASE_URI",
    "DISPATCHER_SECRET_KEY": "SECRET_KEY",
    "DISPATCHER_PASSWORD_SALT": "SECURITY_PASSWORD_SALT",
    # A Redis URI may hold a password.
    "DISPATCHER_RATELIMIT_STORAGE_URI": "RATELIMIT_STORAGE_URI",
    "DISPATCHER_METRICS_TOKEN": "METRICS_BEARER_TOKEN",
    "DISPATCHER_LEASE_WEBHOOK_SECRET": "LEASE_WEBHOOK_SECRET",
}


def settings_from_env(environ=os.environ):
    """Return the settings that the environment sets (secrets, database URL)."""
    return {key: environ[var] for var, key in ENVIRONMENT_SETTINGS.items() if environ.get(var)}
