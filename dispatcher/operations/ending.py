"""Ending a VM: the one way the dispatcher destroys a node and says so.

Used by every path that ends a VM: ``vm/stop``, a release, the end of a lease, a pool's
retirements and the reconcile's destroy of an orphan. Each destroys the node, takes a
node the cloud no longer has as ended (what was wanted), moves the VM's row to DELETED
and records what happened in the history, committed together.
"""

import re
from dataclasses import dataclass

from .. import bookkeeping, history
from ..clouds import Cloud, nodes
from ..errors import DispatcherError, NotFoundError
from ..extensions import db


@dataclass(frozen=True)
class Wording:
    """How the history says each way an end went: ``{node}`` is the node's id, ``{what}``
    the caller's words (why it ends), ``{error}`` the cloud's message. Filled in one pass,
    so that text from a user or a cloud is never read as a placeholder."""

    destroyed: str
    gone: str
    failed: str


@dataclass(frozen=True)
class Ended:
    """What became of the VM: destroyed now, or gone already."""

    node_id: str
    destroyed: bool


def end_vm(
    cloud: Cloud,
    node,
    what: str,
    entry: dict | int | None,
    wording: Wording,
    known_gone: bool = False,
) -> Ended:
    """Destroy ``node`` (a libcloud node, or its id) on ``cloud``, mark its row DELETED
    and record it: a new history entry of ``entry``'s fields, or the entry of that id amended
    when the change it tells of was recorded already (None: no history, a stop of a VM
    nobody holds). ``known_gone``: the cloud's listing lacks it, so it is not asked.

    A node the cloud does not have is ended all the same. A failure is recorded (the row
    is left as it was, so that a later pass or request tries again) and raised.

    :raises DispatcherError: the cloud failed to destroy the node.
    """
    node_id = node if isinstance(node, str) else str(node.id)
    destroyed = False
    if not known_gone:
        try:
            if isinstance(node, str):
                nodes.destroy_node(cloud, node_id=node_id)
            else:
                nodes.destroy(cloud, node)
            destroyed = True
        except NotFoundError:
            pass
        except DispatcherError as exc:
            failed = fill(wording.failed, node=node_id, what=what, error=exc.message)
            _say(entry, str(exc.status), failed)
            db.session.commit()
            raise
    bookkeeping.backend().forget(cloud.name, node_id)
    message = fill(wording.destroyed if destroyed else wording.gone, node=node_id, what=what)
    _say(entry, "ok", message)
    db.session.commit()
    return Ended(node_id, destroyed)


def fill(template: str, **values: str) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced, in one pass."""
    return re.sub(r"\{(\w+)\}", lambda match: values.get(match[1], match[0]), template)


def _say(entry: dict | int | None, outcome: str, message: str) -> None:
    if isinstance(entry, int):
        history.amend(entry, outcome, message)
    elif entry is not None:
        history.record(**entry, outcome=outcome, message=message[:1000])
