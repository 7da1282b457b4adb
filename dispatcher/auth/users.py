"""Users and roles, and the changes that end or narrow their tokens: each one announced
(``token_check.announce``) in the transaction of the change."""

import logging
import secrets

from flask import current_app
from flask_security import SQLAlchemyUserDatastore, hash_password
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..extensions import db, security
from ..models import ADMIN, AGENT, ROLES, Role, User
from .token_check import announce

log = logging.getLogger(__name__)

BOOTSTRAP_ADMIN = "admin"


def _datastore() -> SQLAlchemyUserDatastore:
    return security.datastore


def revoke_tokens(user: User) -> None:
    """Invalidate every token ``user`` holds, in every process at once."""
    _datastore().set_token_uniquifier(user)
    announce(user.id)
    db.session.commit()
    log.info("tokens revoked for user id %s", user.id)


def ensure_roles() -> list[Role]:
    """Create the roles admin and agent where they are missing."""
    roles = [
        _datastore().find_or_create_role(name, description=text) for name, text in ROLES.items()
    ]
    db.session.commit()
    return roles


def get_user(username: str) -> User:
    """Return the user called ``username``.

    :raises NotFoundError: no such user.
    """
    user = _datastore().find_user(username=username)
    if user is None:
        raise NotFoundError(f"no user {username!r}")
    return user


def _role(name: str) -> Role:
    role = _datastore().find_role(name)
    if role is None:
        known = ", ".join(sorted(ROLES))
        raise NotFoundError(f"no role {name!r} (roles: {known}; run init-db to create them)")
    return role


def _check_password(password: str) -> None:
    minimum = current_app.config["SECURITY_PASSWORD_LENGTH_MIN"]
    if not isinstance(password, str) or len(password) < minimum:
        raise InvalidRequestError(f"password: at least {minimum} characters")


def create_user(
    username: str, password: str, roles: tuple[str, ...] = (), email: str | None = None
) -> User:
    """Create an active user with ``roles``; nothing is written if any check fails.

    :raises InvalidRequestError: empty username or too short a password.
    :raises ConflictError: the username or email is taken.
    :raises NotFoundError: a role that does not exist.
    """
    if not username or not username.strip():
        raise InvalidRequestError("username: non-empty string")
    _check_password(password)
    if _datastore().find_user(username=username) is not None:
        raise ConflictError(f"user {username!r} exists already")
    if email and _datastore().find_user(email=email) is not None:
        raise ConflictError(f"email {email!r} belongs to another user")
    role_rows = [_role(name) for name in dict.fromkeys(roles)]
    user = _datastore().create_user(
        username=username, email=email or None, password=hash_password(password), roles=role_rows
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # another process took the name between check and commit
        raise ConflictError(f"user {username!r} exists already") from None
    log.info("user id %s created with roles %s", user.id, ",".join(roles) or "-")
    return user


def generate_password() -> str:
    """A random password for a user the dispatcher creates itself."""
    return secrets.token_urlsafe(18)


def set_password(username: str, password: str, keep_tokens: bool = False) -> User:
    """Replace the user's password (stored hashed) and end the tokens it holds, unless
    ``keep_tokens``.

    :raises NotFoundError: no such user.
    :raises InvalidRequestError: too short a password.
    """
    _check_password(password)
    user = get_user(username)
    user.password = hash_password(password)
    if not keep_tokens:
        _datastore().set_token_uniquifier(user)
    announce(user.id)
    db.session.commit()
    return user


def set_active(username: str, active: bool) -> bool:
    """Activate or deactivate a user; False if it was so already. A deactivated user
    gets no token, and the tokens it held end for good: activated again, it logs in anew.

    :raises NotFoundError: no such user.
    """
    user = get_user(username)
    datastore = _datastore()
    changed = (datastore.activate_user if active else datastore.deactivate_user)(user)
    if not active:
        datastore.set_token_uniquifier(user)
    announce(user.id)
    db.session.commit()
    return changed


def add_role(username: str, role: str) -> bool:
    """Give ``role`` to the user; False if the user had it already.

    :raises NotFoundError: no such user or role.
    """
    user, role_row = get_user(username), _role(role)
    added = _datastore().add_role_to_user(user, role_row)
    announce(user.id)
    db.session.commit()
    return added


def remove_role(username: str, role: str) -> bool:
    """Take ``role`` from the user; False if the user did not have it.

    :raises NotFoundError: no such user or role.
    """
    user, role_row = get_user(username), _role(role)
    removed = _datastore().remove_role_from_user(user, role_row)
    announce(user.id)
    db.session.commit()
    return removed


def list_users() -> list[User]:
    """Every user, by username."""
    return db.session.scalars(db.select(User).order_by(User.username)).all()


def bootstrap_admin(password: str | None = None) -> str | None:
    """On a database without users, create ``admin`` with roles admin and agent.

    Returns the password when it was generated here (the caller shows it once),
    None when ``password`` was given or a user exists already.
    """
    ensure_roles()
    if db.session.scalar(db.select(User.id).limit(1)) is not None:
        return None
    generated = None if password else generate_password()
    create_user(BOOTSTRAP_ADMIN, password or generated, roles=(ADMIN, AGENT))
    return generated
