"""The admins' rules set and removed, in the session of the use case that commits them."""

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import clock, pools, revisions
from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..extensions import db
from ..models import QuotaRule
from .in_force import EXTENSION, check_whose, enabled, rule_of_row
from .rules import Rule, check_pools
from .usage import rule_to_dict


def _checked(scope: str, name: str | None) -> None:
    if not enabled():
        raise InvalidRequestError(
            "quotas need the local ledger (ASSIGNMENT_BACKEND=local), which counts what each "
            "caller holds"
        )
    check_whose(scope, name)


def _row(scope: str, name: str | None, pool: str | None) -> QuotaRule | None:
    query = select(QuotaRule).where(
        QuotaRule.scope == scope, QuotaRule.name == (name or ""), QuotaRule.pool == (pool or "")
    )
    return db.session.scalars(query).first()


def put_rule(scope: str, name: str | None, body: dict, by: str) -> dict:
    """Set the database's rule of ``scope`` and ``name`` for ``body["pool"]`` (if any) to
    the limits of ``body``, in place of what it set before; the rule as shown. Not
    committed.

    :raises NotFoundError: no such user or role.
    :raises InvalidRequestError: an unknown pool, or a bookkeeping without quotas.
    """
    limits = dict(body)
    pool = limits.pop("pool", None)
    limits.pop("auth_token", None)
    _checked(scope, name)
    check_pools("", limits, pool, {spec.name for spec in pools.every()})
    row = _row(scope, name, pool)
    if row is None:
        try:
            with db.session.begin_nested():
                row = QuotaRule(scope=scope, name=name or "", pool=pool or "", limits=limits)
                db.session.add(row)
        except IntegrityError:
            raise ConflictError(
                f"the quota rule of {Rule(scope, name, pool, {}).label()} was set by another "
                "request at the same time: try again"
            ) from None
    row.limits = limits
    row.updated_by = by
    row.updated_at = clock.now()
    db.session.flush()
    revisions.bump(revisions.QUOTA_RULES)
    return rule_to_dict(rule_of_row(row))


def delete_rule(scope: str, name: str | None, pool: str | None) -> dict | None:
    """Remove the database's rule of ``scope``, ``name`` and ``pool``; the setting's rule
    that applies again in its place, if any. Not committed.

    :raises NotFoundError: no such user or role, or the database has no such rule.
    """
    _checked(scope, name)
    row = _row(scope, name, pool)
    if row is None:
        whose = Rule(scope, name, pool, {}).label()
        raise NotFoundError(f"no quota rule of {whose} was set here")
    db.session.delete(row)
    db.session.flush()
    revisions.bump(revisions.QUOTA_RULES)
    setting = current_app.extensions[EXTENSION].get((scope, name, pool))
    return rule_to_dict(setting) if setting is not None else None
