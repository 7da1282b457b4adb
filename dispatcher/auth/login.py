"""Logging in: the only place a password is checked and a token issued."""

import logging
import secrets

from flask import current_app
from flask_security import hash_password, verify_and_update_password, verify_password

from ..errors import ForbiddenError
from ..extensions import db, security

log = logging.getLogger(__name__)


def _dummy_hash() -> str:
    """A hash to verify against for unknown users, so that they cost as much as known ones."""
    cache = current_app.extensions.setdefault("dispatcher.auth", {})
    if "dummy_hash" not in cache:
        cache["dummy_hash"] = hash_password(secrets.token_urlsafe(16))
    return cache["dummy_hash"]


def issue_token(username: str, password: str) -> str:
    """Return a new token for the user whose password this is.

    :raises ForbiddenError: unknown user, wrong password or inactive user (the
        original's "Forbidden", the same for all three).
    """
    user = security.datastore.find_user(username=username)
    if user is None:
        verify_password(password, _dummy_hash())
        raise ForbiddenError("Forbidden")
    verified = verify_and_update_password(password, user)
    db.session.commit()  # a hash the hasher upgraded on the way
    if not verified or not user.active:
        log.info("token refused for user id %s", user.id)
        raise ForbiddenError("Forbidden")
    return user.get_auth_token()
