"""Lease webhooks: a durable outbox of the calls the pool manager owes a receiver.

``queue`` adds a call (a ``WebhookDelivery`` row) to the session of the change it tells
of, without committing: the caller commits both together, so an event exists if and only
if its change does. ``deliver_due`` is the pool manager's: it POSTs the calls that are
due, signed (``sign``) with LEASE_WEBHOOK_SECRET, and tries a failed one again after a
back-off that doubles, LEASE_WEBHOOK_ATTEMPTS times in all. Nothing is sent inside a
client's request.

Each receiver (scheme, host and port) gets its calls in order from one thread, and the
receivers from several at once: a receiver that fails or does not answer costs its own
calls one LEASE_WEBHOOK_TIMEOUT, not the others'. Its calls after the failed one wait for
the next ``deliver_due`` rather than be tried against a receiver that just failed.

Every call made and every failure goes into the history (action ``webhook``, caller
``lease-webhook``) and the log, naming the receiver by scheme, host and port only: never
a URL's path, query or credentials, never the secret.
"""

import datetime
import hashlib
import hmac
import json
from collections.abc import Mapping
from importlib import metadata
from urllib.parse import urlsplit

from .. import clock
from ..config import check_number
from ..errors import ConfigurationError
from ..extensions import db
from ..models import WebhookDelivery
from ..serializers import utc_iso

__all__ = [
    "CALLER",
    "EVENTS",
    "DeliveryReport",
    "check_config",
    "check_url",
    "deliver_due",
    "init_app",
    "origin",
    "queue",
    "queue_request",
    "sign",
]

EVENTS = ("expiring", "released")
# The events of a request for VMs that waits in line (``queue_request``).
REQUEST_EVENTS = ("request.ready", "request.expired", "request.failed")
# The history's action and caller for each call made.
ACTION = "webhook"
CALLER = "lease-webhook"
SIGNATURE_HEADER = "X-Dispatcher-Signature"
DELIVERY_HEADER = "X-Dispatcher-Delivery"


def _version() -> str:
    try:
        return metadata.version("dispatcher")
    except metadata.PackageNotFoundError:
        return "unknown"


USER_AGENT = f"dispatcher/{_version()} (lease webhook)"


# -- the configuration ----------------------------------------------------------------


def check_url(where: str, url, secret) -> str:
    """``url`` as a webhook's receiver: an http or https URL with a host, and a secret to
    sign its calls with (unsigned calls are refused). Returns ``url``.

    ``where`` names the setting in the message: ``LEASE_WEBHOOK_URL``, or a pool's
    ``POOLS['web']: webhook_url``. The message never shows the URL, which may hold
    credentials.

    :raises ConfigurationError: one line naming ``where``.
    """
    if not _is_http_url(url):
        raise ConfigurationError(f"{where} must be an http or https URL with a host")
    if not secret:
        raise ConfigurationError(
            f"{where} is set but LEASE_WEBHOOK_SECRET is not: set it (or the environment "
            "variable DISPATCHER_LEASE_WEBHOOK_SECRET) so that the calls are signed"
        )
    return url


def _is_http_url(url) -> bool:
    if not isinstance(url, str) or any(char.isspace() for char in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_config(config: Mapping) -> None:
    """The lease webhook settings can work.

    :raises ConfigurationError: one line naming the setting at fault.
    """
    secret = config.get("LEASE_WEBHOOK_SECRET")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise ConfigurationError("LEASE_WEBHOOK_SECRET must be a non-empty text")
    for setting in ("LEASE_WEBHOOK_URL", "REQUEST_WEBHOOK_URL"):
        if config.get(setting):
            check_url(setting, config[setting], secret)
    check_number(config, "LEASE_WEBHOOK_ATTEMPTS", least=1, whole=True)
    check_number(config, "LEASE_WEBHOOK_BACKOFF_SECONDS", above=True)
    check_number(config, "LEASE_WEBHOOK_TIMEOUT", above=True)


def init_app(app) -> None:
    """Check the lease webhook settings at start-up (``check_config``).

    :raises ConfigurationError: one line naming the setting at fault.
    """
    check_config(app.config)


# -- queueing -------------------------------------------------------------------------


def queue(
    url: str | None,
    event: str,
    *,
    cloud: str,
    id_vm,
    hostname: str | None,
    user: str | None,
    vm_type: str | None,
    expires_at: datetime.datetime | None,
) -> WebhookDelivery | None:
    """Add the call of ``event`` to ``url`` to the session, due now, without committing:
    the caller commits it with the change it tells of. Nothing is sent here.

    The body is built once, as compact JSON, and stored as it will be signed and sent:
    ``{"event", "cloud", "id_vm", "hostname", "user", "vm_type", "expires_at"}``, with
    ``expires_at`` in ISO 8601 UTC (null for None). No ``url`` (None or empty): no
    webhook is configured, nothing is queued, and None is returned.

    :raises ValueError: ``event`` is not one of ``EVENTS``.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r} (known: {', '.join(EVENTS)})")
    if not url:
        return None
    id_vm = None if id_vm is None else str(id_vm)
    body = {
        "event": event,
        "cloud": cloud,
        "id_vm": id_vm,
        "hostname": hostname,
        "user": user,
        "vm_type": vm_type,
        "expires_at": utc_iso(expires_at),
    }
    row = WebhookDelivery(
        event=event,
        url=url,
        body=json.dumps(body, separators=(",", ":")),
        cloud=cloud,
        id_vm=id_vm,
        hostname=hostname,
        attempts=0,
        next_attempt_at=clock.now(),
    )
    db.session.add(row)
    return row


def queue_request(url: str | None, event: str, cloud: str, request: dict) -> WebhookDelivery | None:
    """Add the call of a request's ``event`` to ``url`` to the session, as ``queue`` does
    (the caller commits it with the change it tells of): the body is ``{"event", "user",
    "vm_type" (its types, comma-separated), "request": REQUEST}``; ``cloud`` is the one its
    history entries go under. No ``url``: nothing is queued.

    :raises ValueError: ``event`` is not one of ``REQUEST_EVENTS``.
    """
    if event not in REQUEST_EVENTS:
        raise ValueError(f"unknown request event {event!r} (known: {', '.join(REQUEST_EVENTS)})")
    if not url:
        return None
    body = {
        "event": event,
        "user": request["user"],
        "vm_type": ",".join(sorted(request["asked"])),
        "request": request,
    }
    row = WebhookDelivery(
        event=event,
        url=url,
        body=json.dumps(body, separators=(",", ":")),
        cloud=cloud,
        attempts=0,
        next_attempt_at=clock.now(),
    )
    db.session.add(row)
    return row


def sign(body: bytes, secret: str) -> str:
    """The value of X-Dispatcher-Signature for ``body``: ``sha256=`` and the hex digest of
    its HMAC-SHA256 under ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


from .delivery import DeliveryReport, deliver_due, origin  # noqa: E402 (they use the above)
