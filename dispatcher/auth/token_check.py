"""Who a request's token says the caller is, and what an API view demands of the caller.

A token is verified as Flask-Security-Too issued it (signature, age, its user's token
uniquifier, the user active) against the database, or taken from this process's cache
of verified tokens (``token_cache``) while the process hears every revocation
(``revocation``). The caller is set as Flask-Login's user of the request, so that
``current_user`` is it, and nothing else runs per request: no Flask-Principal identity
(the views' roles are checked here, on the caller's roles), no session.

The cache is off until the serving command turns it on (``serve``): gunicorn's workers
(``dispatcher.wsgi``) on PostgreSQL, ``dispatcher run`` on PostgreSQL or SQLite.
"""

import functools
import time

from flask import current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadData
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import metrics
from ..config import check_number
from ..errors import AuthenticationRequiredError, ForbiddenError
from ..extensions import db
from ..models import User
from . import library_seams, revocation
from .token_cache import Caller, VerifiedTokens

EXTENSION = "dispatcher.auth.token_check"
UNAUTHENTICATED = "Unauthorized: a valid auth token is required"


class TokenCheck:
    """One app's cache of verified tokens, and what tells whether it may answer now
    (None: it may not, the cache is off)."""

    def __init__(self, cache: VerifiedTokens):
        self.cache = cache
        self.guard = None

    def usable(self) -> bool:
        """Whether the cache may answer, and keep what is verified, now."""
        return self.guard is not None and self.guard.usable()


class NoSessions(SecureCookieSessionInterface):
    """A token API keeps no session: no cookie is read or written."""

    def open_session(self, app, request):
        return self.make_null_session(app)

    def save_session(self, app, session, response):
        return None


def init_app(app) -> None:
    """The token check of ``app``, its cache off; no Flask-Principal identity per
    request, no session.

    :raises ConfigurationError: a bad TOKEN_CACHE_SIZE or TOKEN_CACHE_SECONDS.
    """
    check_number(app.config, "TOKEN_CACHE_SIZE", least=1, whole=True)
    check_number(app.config, "TOKEN_CACHE_SECONDS", unit=" of seconds", note=" (0: off)")
    size, seconds = app.config["TOKEN_CACHE_SIZE"], app.config["TOKEN_CACHE_SECONDS"]
    cache = VerifiedTokens(size, seconds, changed=metrics.token_cache_entries)
    app.extensions[EXTENSION] = TokenCheck(cache)
    library_seams.drop_principal_identity(app)
    app.session_interface = NoSessions()
    # After every view, before the request log (after_request runs in reverse order).
    app.after_request(_name_the_caller)


def _name_the_caller(response):
    """A request that carried a token but reached no view that checks one (no such URL,
    no such method, a public view) is logged with its caller all the same."""
    if g.get("token_checked"):
        return response
    try:
        authenticate()
    except Exception:  # noqa: BLE001 (the answer is made; the log line says "-")
        db.session.rollback()  # a body too large to read, the database away
    return response


def serve(app, single_process: bool = False) -> None:
    """Turn the cache on for the process (and its forks) that serves ``app``, where every
    revocation can reach it: on PostgreSQL always, on SQLite only when ``single_process``
    serves (``dispatcher run``)."""
    check = app.extensions[EXTENSION]
    if check.guard is not None or not app.config["TOKEN_CACHE_SECONDS"]:
        return
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "postgresql":
            check.guard = revocation.Listener(engine, check.cache)
        elif engine.dialect.name == "sqlite" and single_process:
            path = engine.url.database
            if path and path != ":memory:" and not path.startswith("file:"):
                check.guard = revocation.FileWatch(path, check.cache)


def check() -> TokenCheck:
    return current_app.extensions[EXTENSION]


def announce(user_id: int) -> None:
    """The user's tokens changed (``users``): in the transaction of the change."""
    revocation.announce(user_id, check().cache)


def _token() -> str | None:
    """The request's token, where Flask-Security-Too looks: the JSON body's key, else
    the query parameter, else the header, without the spaces and tabs around its value."""
    config = current_app.config
    header = request.headers.get(config["SECURITY_TOKEN_AUTHENTICATION_HEADER"])
    if header is not None:
        # HTTP: whitespace around a field's value is not part of it (RFC 9110, 5.5).
        # gunicorn drops it itself, http.server (dispatcher run) only before the value.
        header = header.strip(" \t")
    token = request.args.get(config["SECURITY_TOKEN_AUTHENTICATION_KEY"], header)
    if request.is_json:
        data = request.get_json(silent=True)
        if isinstance(data, dict):
            token = data.get(config["SECURITY_TOKEN_AUTHENTICATION_KEY"], token)
    return token if isinstance(token, str) and token else None


def _verified(token: str, tokens: TokenCheck, keep: bool) -> Caller | None:
    """The caller of ``token`` read from the database, kept in the cache if ``keep``."""
    epoch = tokens.cache.epoch()
    try:
        data = library_seams.parse_token(token)
    except (BadData, ValueError, KeyError, TypeError):
        return None
    user = (
        db.session.scalars(
            select(User)
            .options(joinedload(User.roles))
            .where(User.fs_token_uniquifier == library_seams.token_uniquifier(data))
        )
        .unique()
        .one_or_none()
    )
    if user is None or not user.active or not user.verify_auth_token(data):
        return None
    caller = Caller(
        user.id, user.username, user.fs_uniquifier, frozenset(r.name for r in user.roles)
    )
    if keep:
        ends = library_seams.token_end(data, current_app.config["SECURITY_TOKEN_MAX_AGE"])
        tokens.cache.put(token, caller, ends - time.time(), epoch)
    return caller


def authenticate() -> Caller | None:
    """The caller of the request's token, set as the request's user; None without a
    valid token. Once per request."""
    if g.get("token_checked"):
        return library_seams.request_user()
    g.token_checked = True
    token = _token()
    if token is None:
        return None
    tokens = check()
    usable = tokens.usable()
    caller = tokens.cache.get(token) if usable else None
    metrics.TOKEN_CHECKS.labels("cache" if caller is not None else "database").inc()
    if caller is None:
        caller = _verified(token, tokens, keep=usable)
        if caller is None:
            return None
    library_seams.set_request_user(caller)  # Flask-Login's current_user
    return caller


def refuse_unauthenticated(mechanisms=None, headers=None):
    """No valid token: 401. (Also Flask-Security-Too's handler, hence its arguments.)

    :raises AuthenticationRequiredError: always; a database outage first, as the 503
        it is, rather than a 401 telling clients to log in again.
    """
    db.session.rollback()
    db.session.execute(select(1))
    raise AuthenticationRequiredError(UNAUTHENTICATED)


def refuse_unauthorized(func_name=None, params=None):
    """A role missing: 403 naming the roles ``params`` that would do.

    :raises ForbiddenError: always.
    """
    roles = " or ".join(params or [])
    raise ForbiddenError(f"Forbidden: this needs the role {roles}" if roles else "Forbidden")


def token_required(view):
    """A valid token (401 otherwise)."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        if authenticate() is None:
            refuse_unauthenticated()
        return view(*args, **kwargs)

    return checked


def roles_required(*roles: str):
    """A valid token of a caller with one of ``roles`` (401, 403 otherwise)."""

    def decorate(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            caller = authenticate()
            if caller is None:
                refuse_unauthenticated()
            if not any(caller.has_role(role) for role in roles):
                refuse_unauthorized(params=roles)
            return view(*args, **kwargs)

        checked.roles = roles  # read by the OpenAPI document
        return checked

    return decorate
