"""Setting and clearing an admin's override of a warm pool, which every worker applies at
its next pass."""

import logging

from .. import history
from ..errors import NotFoundError
from ..extensions import db
from ..pools import PoolSpec, overrides
from ..pools.status import configured, override_to_dict, pool_detail_to_dict

log = logging.getLogger(__name__)


def _record(spec: PoolSpec, by: str, message: str) -> None:
    """The change in the history of each of the pool's clouds."""
    for cloud in spec.cloud_names:
        history.record(
            cloud=cloud,
            action="override",
            caller=by,
            vm_type=spec.name,
            outcome="ok",
            message=message,
        )


def override_pool(spec: PoolSpec, changes: dict, by: str) -> dict:
    """Merge ``changes`` (validated: ``validation.POOL_OVERRIDE``) into the override of the
    pool ``spec`` (as POOLS configures it), for every worker's next pass; the pool as
    ``GET /api/v1/pools/<name>`` shows it.

    :raises InvalidRequestError: the min_ready in force would be above the max_total.
    """
    row = overrides.put(spec, changes, by)
    message = overrides.describe(spec.name, override_to_dict(row), configured(spec))
    _record(spec, by, message)
    db.session.commit()
    log.info("%s (set by %s)", message, by)
    return pool_detail_to_dict(spec)


def clear_pool_override(spec: PoolSpec, by: str) -> dict:
    """Remove the override of the pool ``spec``: POOLS applies again at every worker's next
    pass; the pool as ``GET /api/v1/pools/<name>`` shows it.

    :raises NotFoundError: the pool has no override.
    """
    if not overrides.clear(spec.name):
        raise NotFoundError(f"pool {spec.name} has no override")
    message = f"pool {spec.name}: override cleared, configured values apply"
    _record(spec, by, message)
    db.session.commit()
    log.info("%s (by %s)", message, by)
    return pool_detail_to_dict(spec)
