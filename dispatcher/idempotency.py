"""Requests made safe to retry: the answers kept under the callers' Idempotency-Keys.

The first request with a key claims it (a row without an answer, committed at once: the
unique constraint on caller and key picks one claimant among every worker and host), runs,
and leaves its answer in the row; a repeat within ``IDEMPOTENCY_TTL`` gets that answer back
without running again. The HTTP side (the header, the replayed answer) is
``api.idempotency``; this module is the rows.
"""

import datetime
import hashlib
import json
import logging
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import clock
from .errors import IdempotencyKeyInUseError, IdempotencyKeyReusedError
from .extensions import db
from .models import IdempotencyKey
from .serializers import as_utc

log = logging.getLogger(__name__)

# Seconds a client is told to wait (Retry-After) while the first request with its key runs.
RETRY_AFTER = 1
# A request still running after this long is dead (its worker killed, its host gone) and
# its key may be claimed again: no request lives that long. gunicorn kills a worker whose
# request has run 4 × CLOUD_TIMEOUT + 10 seconds (dispatcher/gunicorn_config.py); the bound
# is twice that, and at least ten minutes.
RUNNING_LIMIT_MIN = 600
# Claims tried before a request gives up with a 409: each one lost a race against a
# claim, a take-over or a purge of the same key that another request made meanwhile.
CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class Claim:
    """A key this request holds: it runs, then ``store`` or ``give_back``."""

    id: int
    expires_at: datetime.datetime  # as written: a take-over by another request changes it


@dataclass(frozen=True)
class StoredAnswer:
    """The answer of the first request with a key, for its repeats."""

    status: int
    body: str


def running_limit() -> datetime.timedelta:
    """How long a request may run before its claim counts as abandoned (RUNNING_LIMIT_MIN)."""
    worker_timeout = 4 * int(current_app.config["CLOUD_TIMEOUT"]) + 10
    return datetime.timedelta(seconds=max(RUNNING_LIMIT_MIN, 2 * worker_timeout))


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 (hex) of the method, the path and the body: the canonical JSON of a JSON
    body (keys sorted, no spaces) without its token key (``auth_token``), so that a retry
    with a fresh token is the same request; the bytes as they came of any other body."""
    try:
        parsed = current_app.json.loads(body) if body.strip() else None
    except ValueError:  # not JSON, or not text
        content = body
    else:
        if isinstance(parsed, dict):
            parsed.pop(current_app.config["SECURITY_TOKEN_AUTHENTICATION_KEY"], None)
        canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        content = canonical.encode() if parsed is not None else b""
    digest = hashlib.sha256()
    # The JSON of method and path holds no line break: the first one ends it.
    digest.update(json.dumps([method.upper(), path]).encode() + b"\n")
    digest.update(content)
    return digest.hexdigest()


def claim(user_id: int, key: str, request_fingerprint: str) -> Claim | StoredAnswer:
    """Claim ``key`` of the caller ``user_id`` for a request: a ``Claim`` when the request is
    to run, committed before this returns; the ``StoredAnswer`` when it ran already.

    An expired key is claimed anew, and so is the key of a request that died running
    (``running_limit``); a request still running keeps its key past its expiry.

    :raises IdempotencyKeyReusedError: the key belongs to another request (422).
    :raises IdempotencyKeyInUseError: the request with the key is still running (409).
    """
    for _ in range(CLAIM_ATTEMPTS):
        now = clock.now()
        row = db.session.scalars(
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id, IdempotencyKey.key == key
            )
        ).one_or_none()
        if row is None:
            claimed = _insert(user_id, key, request_fingerprint, now)
            if claimed is not None:
                return claimed
            continue  # another request claimed it meanwhile: read its row
        running = row.status_code is None
        abandoned = running and as_utc(row.created_at) <= now - running_limit()
        if as_utc(row.expires_at) <= now and (not running or abandoned):
            claimed = _take_over(row, request_fingerprint, now)
        elif row.fingerprint != request_fingerprint:
            raise IdempotencyKeyReusedError(
                "Idempotency-Key was used with another request: a new request needs a new key"
            )
        elif abandoned:
            # Its worker was killed or its host went away before it could answer: whatever
            # it did is unknown, and nobody else will ever answer for the key.
            log.warning(
                "idempotency key %s of user %s: its request died; run again", row.id, user_id
            )
            claimed = _take_over(row, request_fingerprint, now)
        elif running:
            raise IdempotencyKeyInUseError(
                "the request with this Idempotency-Key is still running: try again later",
                RETRY_AFTER,
            )
        else:
            return StoredAnswer(row.status_code, row.body or "")
        if claimed is not None:
            return claimed
    raise IdempotencyKeyInUseError(
        "the request with this Idempotency-Key is being claimed by another: try again later",
        RETRY_AFTER,
    )


def _expiry(now: datetime.datetime) -> datetime.datetime:
    return now + datetime.timedelta(seconds=current_app.config["IDEMPOTENCY_TTL"])


def _insert(user_id: int, key: str, request_fingerprint: str, now) -> Claim | None:
    """A new row for the key, committed; None when another request's row came first."""
    row = IdempotencyKey(
        user_id=user_id,
        key=key,
        fingerprint=request_fingerprint,
        created_at=now,
        expires_at=_expiry(now),
    )
    db.session.add(row)
    try:
        db.session.flush()
        claimed = Claim(row.id, row.expires_at)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    return claimed


def _take_over(row: IdempotencyKey, request_fingerprint: str, now) -> Claim | None:
    """The row made this request's claim, committed, unless another request took it over (or
    purged it) since it was read: then None."""
    expires_at = _expiry(now)
    taken = db.session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == row.id, IdempotencyKey.expires_at == row.expires_at)
        .values(
            fingerprint=request_fingerprint,
            status_code=None,
            body=None,
            created_at=now,
            expires_at=expires_at,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken != 1:
        db.session.rollback()
        return None
    claimed = Claim(row.id, expires_at)
    db.session.commit()
    return claimed


def _ours(claimed: Claim):
    """The WHERE clause of the claim's row while it is still this request's."""
    return (
        IdempotencyKey.id == claimed.id,
        IdempotencyKey.expires_at == claimed.expires_at,
        IdempotencyKey.status_code.is_(None),
    )


def _settle(claimed: Claim, statement, failure: str) -> int | None:
    """Run ``statement`` on the claim's row while it is still this request's, and commit;
    the rows it changed (0: the claim was taken over), None when the database failed
    (logged with ``failure``)."""
    try:
        changed = db.session.execute(
            statement.where(*_ours(claimed)).execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("idempotency key %s: %s: %s", claimed.id, failure, type(exc).__name__)
        return None
    return changed


def store(claimed: Claim, status: int, body: str) -> bool:
    """Keep the request's answer under its key, for the repeats; whether it was kept (not if
    the database failed, or the claim was taken over as abandoned). Commits."""
    statement = update(IdempotencyKey).values(status_code=status, body=body)
    kept = _settle(claimed, statement, "answer not kept")
    if kept == 0:
        log.warning("idempotency key %s: answer not kept: claimed by another", claimed.id)
    return bool(kept)


def give_back(claimed: Claim) -> bool:
    """Delete the claim, so that a retry with the key runs again; whether it was deleted.
    Commits."""
    return bool(_settle(claimed, delete(IdempotencyKey), "not given back"))


def purge_expired(now: datetime.datetime | None = None) -> int:
    """Delete the keys past their expiry (those of requests still running excepted, until
    ``running_limit``); how many. Commits."""
    now = now or clock.now()
    purged = db.session.execute(
        delete(IdempotencyKey)
        .where(
            IdempotencyKey.expires_at <= now,
            or_(
                IdempotencyKey.status_code.is_not(None),
                IdempotencyKey.created_at <= now - running_limit(),
            ),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return purged
