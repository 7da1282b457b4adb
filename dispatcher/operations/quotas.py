"""Setting and clearing the admins' quota rules."""

import logging

from .. import quotas
from ..extensions import db

log = logging.getLogger(__name__)


def set_quota(scope: str, name: str | None, body: dict, by: str) -> dict:
    """Make ``body`` (its limits, for its ``pool`` if any) the rule of ``scope`` and
    ``name`` (None for the default), for every worker's next request; the rule as shown.

    :raises NotFoundError: no such user or role.
    :raises InvalidRequestError: an unknown pool, or a bookkeeping without quotas.
    :raises ConflictError: another request set the same rule at the same time.
    """
    rule = quotas.put_rule(scope, name, body, by)
    db.session.commit()
    log.info("quota rule of %s set by %s", _whose(scope, name, rule["pool"]), by)
    return rule


def clear_quota(scope: str, name: str | None, pool: str | None, by: str) -> dict | None:
    """Remove the rule an admin set for ``scope``, ``name`` and ``pool``; the QUOTAS
    setting's rule that applies again in its place, if any.

    :raises NotFoundError: no such user or role, or no such rule was set.
    :raises InvalidRequestError: a bookkeeping without quotas.
    """
    restored = quotas.delete_rule(scope, name, pool)
    db.session.commit()
    log.info("quota rule of %s cleared by %s", _whose(scope, name, pool), by)
    return restored


def _whose(scope: str, name: str | None, pool: str | None) -> str:
    whose = scope if name is None else f"{scope} {name}"
    return f"{whose} for pool {pool}" if pool is not None else whose
