"""Tags: labels an assign, an extend or a request puts on an assignment (``{"project":
"genomics"}``), kept on the ledger's row and in the history until whatever ends the
assignment clears them. A pool may require some keys (its ``require_tags``). Only the local
ledger keeps them; their shape is the request schemas' (``fields.Tags``).
"""

from flask import current_app

from . import bookkeeping, pools
from .config import check_number
from .errors import ConfigurationError, InvalidRequestError
from .fields import TAGS_MOST

__all__ = ["accepted", "init_app", "require"]


def init_app(app) -> None:
    """Check TAG_MAX, and each pool's require_tags against it.

    :raises ConfigurationError: one line naming the setting or the pool at fault.
    """
    config = app.config
    note = f", at most {TAGS_MOST}"
    check_number(config, "TAG_MAX", whole=True, note=note)
    if config["TAG_MAX"] > TAGS_MOST:
        raise ConfigurationError(f"TAG_MAX must be a whole number from 0{note}")
    for spec in app.extensions[pools.EXTENSION].values():
        if len(spec.require_tags) > config["TAG_MAX"]:
            raise ConfigurationError(
                f"POOLS[{spec.name!r}]: require_tags names {len(spec.require_tags)} keys, "
                f"more than TAG_MAX ({config['TAG_MAX']})"
            )


def accepted(tags: dict | None) -> dict | None:
    """The tags an assign, an extend or a request carries (None: none), once they are
    found to fit: checked before anything is written or asked of the bookkeeping.

    :raises InvalidRequestError: more keys than TAG_MAX; tags asked of a bookkeeping
        that cannot keep them (Cistern).
    """
    if not tags:
        return tags
    if not bookkeeping.backend().keeps_tags:
        raise InvalidRequestError("tags: tags need the local ledger (ASSIGNMENT_BACKEND=local)")
    most = current_app.config["TAG_MAX"]
    if len(tags) > most:
        raise InvalidRequestError(f"tags: at most {most} keys, not {len(tags)}")
    return tags


def require(spec, tags: dict | None) -> None:
    """The pool ``spec`` (None: of no pool) requires tag keys that ``tags`` lacks.

    :raises InvalidRequestError: naming the first key missing.
    """
    if spec is None:
        return
    missing = [key for key in spec.require_tags if key not in (tags or {})]
    if missing:
        raise InvalidRequestError(f"tags: pool {spec.name} requires the tag {missing[0]!r}")
