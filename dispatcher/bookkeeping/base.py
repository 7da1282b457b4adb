"""The bookkeeping interface: who holds which VM of which cloud."""

import abc
from collections.abc import Callable

from ..errors import NotFoundError
from ..models import ASSIGNED, BOOTING, DELETED, FAULTY, RESERVED


def describe_holder(row: dict) -> str:
    """Who or what holds the VM of an ASSIGNMENT row, for a 409's message."""
    if row["status"] == ASSIGNED:
        return f"node {row['id_vm']} is assigned to {row['user']} ({row['recipe']})"
    if row["status"] == FAULTY:
        return f"node {row['id_vm']} is faulty"
    if row["status"] == DELETED:
        return f"node {row['id_vm']} was deleted"
    if row["status"] == BOOTING:
        return f"node {row['id_vm']} is booting for a warm pool"
    if row["status"] == RESERVED:
        return f"node {row['id_vm']} is set aside for a queued request"
    return f"node {row['id_vm']} is free"


class Bookkeeper(abc.ABC):
    """A backend of the assignment bookkeeping.

    Rows are ASSIGNMENT dicts (``serializers.assignment_to_dict``): ``id``, ``id_vm``,
    ``hostname``, ``cloud``, ``recipe``, ``recipe_id``, ``user``, ``status``,
    ``status_desc``. Nothing here commits: the use case that changes a row commits it
    with its history entry.

    What a backend can do beyond the contract is said by its attributes, never by its
    type: ``keeps_leases`` (an assignment's end and its assigner), ``keeps_pools`` (warm
    pools' VMs), ``mends_books`` (the reconcile's fixes change its rows), ``keeps_quotas``
    (what each caller holds and has held, which quotas count), ``keeps_tags`` (an
    assignment's tags), ``keeps_spans`` (each period of each VM in each state, which usage
    reports read).
    """

    keeps_leases = False
    keeps_tags = False
    keeps_spans = False
    keeps_quotas = False
    keeps_pools = False
    mends_books = False

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config) -> "Bookkeeper":
        """The backend as the app's settings configure it."""

    @abc.abstractmethod
    def nodes(self, cloud: str, with_faulty: bool = False) -> list[dict]:
        """The cloud's rows: free and assigned, and the faulty ones too if asked.

        :raises BookkeepingUnavailableError: the backend cannot be reached.
        """

    @abc.abstractmethod
    def find(self, cloud: str, node_id: str | None = None, hostname: str | None = None):
        """The row of the VM with this cloud id or hostname, or None.

        :raises ConflictError: several VMs have that hostname.
        :raises BookkeepingUnavailableError: the backend cannot be reached.
        """

    @abc.abstractmethod
    def assign(
        self,
        cloud: str,
        row: dict,
        user: str,
        vm_type: str,
        assigned_by=None,
        expires_at=None,
        tags=None,
    ) -> dict:
        """Give the free VM of ``row`` to ``user`` for ``vm_type``; ``{"id_vm", "id", "result"}``.

        ``assigned_by`` (the caller) and ``expires_at`` (the lease's end, None: none) are
        kept where the backend keeps leases (the local ledger), ``tags`` where it keeps
        tags (the same).

        :raises ConflictError: the VM is not free (the message names the holder).
        :raises BookkeepingRejectedError: the backend refused, with its reason.
        :raises BookkeepingUnavailableError: the backend cannot be reached.
        """

    @abc.abstractmethod
    def release(self, cloud: str, row: dict, retire: bool = False) -> dict:
        """Free the assigned VM of ``row``; ``{"id_vm", "id", "result"}``.

        ``retire``: the VM is about to be destroyed, and must not be handed out meanwhile
        (a warm pool's VM, which the local ledger then keeps faulty until it is gone).

        :raises ConflictError: the VM is not assigned.
        :raises BookkeepingRejectedError: the backend refused, with its reason.
        :raises BookkeepingUnavailableError: the backend cannot be reached.
        """

    def books(self, cloud: str) -> list[dict]:
        """Every VM the bookkeeping holds on the cloud in any state but deleted, for a
        reconcile against the cloud: ASSIGNMENT rows, each with its ``pool`` (None: none).

        :raises BookkeepingUnavailableError: the backend cannot be reached.
        """
        return [{**row, "pool": None} for row in self.nodes(cloud, with_faulty=True)]

    def find_or_release(self, cloud: str, node_id: str, keeping, record, entry: dict):
        """``find`` by node id, where the statement that finds the VM may free it too, as a
        release that keeps it would (the local ledger: ``ledger.release_kept``, whose
        arguments these are; ``ledger.freed`` of its ``ledger_row`` says whether it did).
        Elsewhere only ``find``.

        :raises BookkeepingUnavailableError: the backend cannot be reached.
        """
        return self.find(cloud, node_id=node_id)

    def ledger_row(self, row: dict):
        """The local ledger's row (``models.Assignment``) behind an ASSIGNMENT dict, with
        its pool and lease; None where the backend keeps no such row."""
        return None

    def register(self, cloud: str, node: dict, vm_type: str | None = None) -> dict | None:
        """Record a VM the dispatcher started (a NODE dict) as free; None where the
        backend learns its VMs elsewhere."""
        return None

    def forget(self, cloud: str, node_id: str) -> None:
        """Note that the VM was destroyed through the dispatcher; nothing where the
        backend learns it elsewhere."""
        return None

    def adopt(self, cloud: str, wanted: str, fetch_node: Callable[[], dict], emulate: bool) -> dict:
        """The row of a VM the bookkeeping does not know, which a request names (``wanted``,
        its id or hostname); ``fetch_node`` asks the cloud for its NODE dict.

        A backend that learns its VMs elsewhere knows none beyond its rows.

        :raises NotFoundError: the VM cannot be adopted, or the cloud has no such node.
        """
        raise NotFoundError(f"no useful node id here: the bookkeeping has no {wanted}")
