"""The quota rules in force: the QUOTAS setting's, read at start, each replaced by the
database's rule of the same scope, name and pool, as of the revision of the rules a
statement of the decision saw (the process's copy while it holds), else read anew."""

from flask import current_app
from sqlalchemy import bindparam, or_, select

from .. import bookkeeping, revisions
from ..errors import NotFoundError
from ..extensions import db
from ..models import QuotaRule, Role, User, roles_users
from .rules import DEFAULT, ROLE, USER, Bounds, Rule, bounds

EXTENSION = "dispatcher.quotas"


def enabled() -> bool:
    """Whether quotas apply: only where the bookkeeping keeps what they count."""
    return bookkeeping.backend().keeps_quotas


def rule_of_row(row) -> Rule:
    """The rule an admin set (a ``QuotaRule``, or a row of its columns), as the setting's
    are read."""
    return Rule(
        row.scope,
        row.name or None,
        row.pool or None,
        dict(row.limits),
        source="database",
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


_RULES = QuotaRule.__table__
# The rules that may bind one user, read when no revision of them is known.
_RULES_OF_USER = select(_RULES).where(
    or_(
        _RULES.c.scope.in_([DEFAULT, ROLE]),
        (_RULES.c.scope == USER) & (_RULES.c.name == bindparam("username")),
    )
)


def _every_rule() -> dict:
    """The database's rules by key."""
    rules = (rule_of_row(row) for row in db.session.execute(select(_RULES)))
    return {rule.key: rule for rule in rules}


# Every rule the database has, kept by the process: an assign decides by them without
# reading them while their revision holds.
KEPT = revisions.Kept(revisions.QUOTA_RULES, _every_rule)


def guessed_revision() -> int | None:
    """The revision of the rules the process keeps, to decide an assign by before its
    statement has seen theirs; None where quotas do not apply."""
    return KEPT.guess() if enabled() else None


def revision_now() -> int:
    """The revision of the rules now, in the session's transaction."""
    return revisions.read(revisions.QUOTA_RULES)


def _binds(rule: Rule, username: str | None) -> bool:
    return username is None or rule.scope != USER or rule.name == username


def rules_in_force(username: str | None = None, revision: int | None = None) -> dict:
    """The rules by key, the database's in place of the setting's: those that may bind
    ``username`` (the default's, its own, every role's), or every rule without one. At a
    ``revision`` of the rules that a statement of the transaction saw, what the process
    keeps of them, if it was read at that revision; else read now."""
    if revision is not None:
        rules = KEPT.at(revision).values()
    elif username is None:
        rules = _every_rule().values()
    else:
        rows = db.session.execute(_RULES_OF_USER, {"username": username})
        rules = (rule_of_row(row) for row in rows)
    found = dict(current_app.extensions[EXTENSION])
    found.update((rule.key, rule) for rule in rules if _binds(rule, username))
    return found


def roles_of(username: str) -> list[str]:
    """The names of the roles of the user called ``username``."""
    query = (
        select(Role.name)
        .join(roles_users, roles_users.c.role_id == Role.id)
        .join(User, User.id == roles_users.c.user_id)
        .where(User.username == username)
    )
    return sorted(db.session.scalars(query))


def bounds_of(username: str, pool: str | None, revision: int | None = None) -> Bounds:
    """Every limit that binds ``username`` in ``pool`` (None: any), by the rules in force
    (at ``revision``: see ``rules_in_force``)."""
    found = rules_in_force(username, revision)
    # The caller's roles matter only where a role has a rule: one query less otherwise.
    roles = roles_of(username) if any(key[0] == ROLE for key in found) else []
    return bounds(found, username, roles, pool)


def check_whose(scope: str, name: str | None) -> None:
    """The user or role a rule would be of exists.

    :raises NotFoundError: it does not.
    """
    if scope == USER and db.session.scalar(select(User.id).where(User.username == name)) is None:
        raise NotFoundError(f"no user is called {name}")
    if scope == ROLE and db.session.scalar(select(Role.id).where(Role.name == name)) is None:
        raise NotFoundError(f"no role is called {name}")
