"""Users, tokens and the token check, over Flask-Security-Too.

- ``login``: the only password check, and issuing a token.
- ``users``: users and roles, and the changes that end or narrow their tokens.
- ``tokens``: tokens read only in the form they were issued in.
- ``token_check``: who a request's token says the caller is, and the views' role checks.
- ``token_cache``: the verified tokens each serving process keeps.
- ``revocation``: how a change to a user's tokens reaches every process (PostgreSQL's
  NOTIFY, SQLite's data_version).
- ``throttle``: the login throttle.

The package sits beside ``clouds`` and ``bookkeeping``: it imports models, the database,
errors, config, metrics and extensions, never ``api``, ``cli`` or the use cases.
"""

from flask_security import SQLAlchemyUserDatastore

from ..extensions import db, security
from ..models import Role, User
from . import library_seams, throttle, token_check
from .login import issue_token
from .throttle import login_attempt
from .token_cache import Caller
from .token_check import (
    UNAUTHENTICATED,
    authenticate,
    refuse_unauthenticated,
    refuse_unauthorized,
    roles_required,
    serve,
    token_required,
)
from .tokens import AsIssuedTokenSerializer
from .users import (
    BOOTSTRAP_ADMIN,
    add_role,
    bootstrap_admin,
    create_user,
    ensure_roles,
    generate_password,
    get_user,
    list_users,
    remove_role,
    revoke_tokens,
    set_active,
    set_password,
)

__all__ = [
    "BOOTSTRAP_ADMIN",
    "UNAUTHENTICATED",
    "Caller",
    "add_role",
    "authenticate",
    "bootstrap_admin",
    "create_user",
    "ensure_roles",
    "generate_password",
    "get_user",
    "init_app",
    "issue_token",
    "list_users",
    "login_attempt",
    "refuse_unauthenticated",
    "refuse_unauthorized",
    "remove_role",
    "revoke_tokens",
    "roles_required",
    "serve",
    "set_active",
    "set_password",
    "token_required",
]


def init_app(app) -> None:
    """Bind Flask-Security-Too to ``app`` (token auth only, errors as the envelope, tokens
    accepted only exactly as issued), then the token check and the login throttle.

    :raises ConfigurationError: a bad TOKEN_CACHE_SIZE or TOKEN_CACHE_SECONDS.
    """
    security.init_app(app, SQLAlchemyUserDatastore(db, User, Role), register_blueprint=False)
    # Flask-Security-Too's own refusals, should any of its checks run: the envelope.
    security.unauthn_handler(refuse_unauthenticated)
    security.unauthz_handler(refuse_unauthorized)
    library_seams.wrap_token_serializer(security, AsIssuedTokenSerializer)
    token_check.init_app(app)
    throttle.init_app(app)
