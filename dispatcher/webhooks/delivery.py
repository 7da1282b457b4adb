"""Sending the lease webhook calls that are due: each receiver in a thread of its own,
its calls in order; a failed call tried again after a back-off that doubles."""

import datetime
import http
import json
import logging
import ssl
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from flask import current_app

from .. import clock, history
from ..extensions import db
from ..models import WebhookDelivery
from . import ACTION, CALLER, DELIVERY_HEADER, SIGNATURE_HEADER, USER_AGENT, sign

log = logging.getLogger(__name__)

# Receivers called at once by one deliver_due.
PARALLEL_RECEIVERS = 8
DELIVER_LIMIT = 100


@dataclass
class DeliveryReport:
    """What one ``deliver_due`` did; each call due is in exactly one count."""

    delivered: int = 0  # answered 2xx
    failed: int = 0  # failed, and will be tried again after its back-off
    given_up: int = 0  # failed for the last time (LEASE_WEBHOOK_ATTEMPTS)
    deferred: int = 0  # not tried: its receiver failed earlier in the same call


@dataclass(frozen=True)
class _Due:
    """A call to make, read from its row before any request is sent."""

    id: int
    url: str
    body: str
    event: str
    attempts: int


@dataclass(frozen=True)
class _Outcome:
    """How one call ended: ``status`` None when no answer came (``reason`` says why)."""

    due: _Due
    ok: bool
    status: int | None = None
    reason: str = ""


def origin(url: str) -> str:
    """The receiver of ``url`` as the log and the history name it: scheme, host and port,
    without credentials, path or query."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "an invalid URL"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def deliver_due(limit: int = DELIVER_LIMIT) -> DeliveryReport:
    """Send the calls that are due (neither delivered nor given up, their time come),
    longest due first, at most ``limit``; record each outcome and commit it.

    Each is a POST of its stored body with ``Content-Type: application/json``, its
    signature, its row id (X-Dispatcher-Delivery) and the dispatcher's User-Agent,
    waiting LEASE_WEBHOOK_TIMEOUT at most, never following a redirect. A 2xx answer
    delivers it. Anything else (another status, no connection, no answer in time) counts
    an attempt and puts the next one LEASE_WEBHOOK_BACKOFF_SECONDS * 2**(attempts - 1)
    later; the last of LEASE_WEBHOOK_ATTEMPTS gives the call up, with a warning.

    Meant for one process at a time (the pool manager holds a lock around it): two at
    once may send a call twice. A process stopped between a call and its record sends it
    again later: receivers may see a call more than once (the same X-Dispatcher-Delivery).
    """
    config = current_app.config
    now = clock.now()
    rows = db.session.scalars(
        db.select(WebhookDelivery)
        .where(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.given_up_at.is_(None),
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    batches: dict[str, list[_Due]] = {}
    for row in rows:
        due = _Due(row.id, row.url, row.body, row.event, row.attempts or 0)
        batches.setdefault(origin(row.url), []).append(due)
    db.session.commit()  # no transaction held open while the receivers answer
    report = DeliveryReport()
    if not batches:
        return report
    sender = _Sender(config.get("LEASE_WEBHOOK_SECRET"), config["LEASE_WEBHOOK_TIMEOUT"])
    workers = min(len(batches), PARALLEL_RECEIVERS)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lease-webhook") as pool:
        futures = [pool.submit(sender.send_in_order, batch) for batch in batches.values()]
        for future in as_completed(futures):
            outcomes, deferred = future.result()
            for outcome in outcomes:
                _record(outcome, config, report)
            report.deferred += deferred
    return report


class _Sender:
    """Makes the calls; touches no database (it runs in the pool's threads)."""

    def __init__(self, secret: str | None, timeout: float):
        self.secret = secret
        self.timeout = timeout

    def send_in_order(self, batch: list[_Due]) -> tuple[list[_Outcome], int]:
        """Call one receiver's ``batch`` in order, up to its first failure: the outcomes,
        and how many calls were left for the next time."""
        outcomes = []
        with requests.Session() as session:
            for due in batch:
                outcome = self._send(session, due)
                outcomes.append(outcome)
                if not outcome.ok:
                    break
        return outcomes, len(batch) - len(outcomes)

    def _send(self, session: requests.Session, due: _Due) -> _Outcome:
        if not self.secret:
            return _Outcome(due, False, reason="no LEASE_WEBHOOK_SECRET to sign with: not sent")
        body = due.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(body, self.secret),
            DELIVERY_HEADER: str(due.id),
        }
        try:
            response = session.post(
                due.url,
                data=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,  # the status is all it needs: no answer body is read
            )
        except Exception as exc:  # noqa: BLE001 (every failure is a failed attempt)
            return _Outcome(due, False, reason=_reason(exc, self.timeout))
        response.close()
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome(due, True, status)
        return _Outcome(due, False, status, reason=_status_text(status))


def _status_text(status: int) -> str:
    try:
        text = f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        text = f"HTTP {status}"
    if 300 <= status < 400:
        text += " (redirects are not followed)"
    return text


def _reason(exc: Exception, timeout: float) -> str:
    """Why a call got no answer, in a few words: never the URL that requests' own text
    shows (its query and credentials)."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    cause = _root_cause(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        reason = getattr(cause, "reason", None) if isinstance(cause, ssl.SSLError) else None
        return f"TLS failed: {reason}" if reason else "TLS failed"
    if isinstance(exc, requests.ConnectionError):
        strerror = getattr(cause, "strerror", None) if isinstance(cause, OSError) else None
        if strerror:
            return f"connection failed: {' '.join(strerror.split())}"
        return "connection failed"
    return type(exc).__name__


def _root_cause(exc: BaseException) -> BaseException | None:
    """The operating system's (or TLS's) error under requests' and urllib3's wrappers."""
    seen, stack = set(), [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and (
            isinstance(current, ssl.SSLError) or getattr(current, "strerror", None)
        ):
            return current
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return None


def _record(outcome: _Outcome, config: Mapping, report: DeliveryReport) -> None:
    """Write ``outcome`` to its row and the history (one commit), and log it."""
    due = outcome.due
    row = db.session.get(WebhookDelivery, due.id)
    now = clock.now()
    row.attempts = due.attempts + 1
    where = origin(due.url)
    if outcome.ok:
        row.delivered_at = now
        message = f"{due.event} event delivered to {where} (attempt {row.attempts})"
        report.delivered += 1
        level, result = logging.INFO, "ok"
    else:
        row.last_error = outcome.reason[:1000]
        most = config["LEASE_WEBHOOK_ATTEMPTS"]
        if row.attempts >= most:
            row.given_up_at = now
            message = (
                f"{due.event} event to {where} given up after {row.attempts} attempts: "
                f"{outcome.reason}"
            )
            report.given_up += 1
        else:
            pause = config["LEASE_WEBHOOK_BACKOFF_SECONDS"] * 2 ** (row.attempts - 1)
            row.next_attempt_at = now + datetime.timedelta(seconds=pause)
            message = (
                f"{due.event} event to {where} failed (attempt {row.attempts} of {most}): "
                f"{outcome.reason}; next try in {pause:g} s"
            )
            report.failed += 1
        level = logging.WARNING
        result = str(outcome.status) if outcome.status is not None else "failed"
    fields = _body_fields(due.body)
    history.record(
        cloud=row.cloud,
        action=ACTION,
        caller=CALLER,
        id_vm=row.id_vm,
        hostname=row.hostname,
        user=fields.get("user"),
        vm_type=fields.get("vm_type"),
        outcome=result,
        message=message[:1000],
    )
    db.session.commit()
    node = f"node {row.id_vm} of {row.cloud}"
    log.log(level, "lease webhook %s (%s): %s", due.id, node, message)


def _body_fields(body: str) -> dict:
    try:
        fields = json.loads(body)
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}
