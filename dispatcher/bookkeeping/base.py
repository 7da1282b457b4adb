"""The bookkeeping interface: who holds which VM of which cloud."""

import abc

from ..models import ASSIGNED, DELETED, FAULTY


def describe_holder(row: dict) -> str:
    """Who or what holds the VM of an ASSIGNMENT row, for a 409's message."""
    if row["status"] == ASSIGNED:
        return f"node {row['id_vm']} is assigned to {row['user']} ({row['recipe']})"
    if row["status"] == FAULTY:
        return f"node {row['id_vm']} is faulty"
    if row["status"] == DELETED:
        return f"node {row['id_vm']} was deleted"
    return f"node {row['id_vm']} is free"


class Bookkeeper(abc.ABC):
    """A backend of the assignment bookkeeping.

    Rows are ASSIGNMENT dicts (DESIGN.md): ``id``, ``id_vm``, ``hostname``, ``cloud``,
    ``recipe``, ``recipe_id``, ``user``, ``status``, ``status_desc``. ``assign`` and
    ``release`` leave committing to the caller, who records the audit entry in the
    same transaction.
    """

    #: Whether the dispatcher itself learns VMs (vm/start, ledger-sync) into this backend.
    registers_nodes = False

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
    def assign(self, cloud: str, row: dict, user: str, vm_type: str) -> dict:
        """Give the free VM of ``row`` to ``user`` for ``vm_type``; ``{"id_vm", "id", "result"}``.

        :raises ConflictError: the VM is not free (the message names the holder).
        :raises BookkeepingRejectedError: the backend refused, with its reason.
        :raises BookkeepingUnavailableError: the backend cannot be reached.
        """

    @abc.abstractmethod
    def release(self, cloud: str, row: dict) -> dict:
        """Free the assigned VM of ``row``; ``{"id_vm", "id", "result"}``.

        :raises ConflictError: the VM is not assigned.
        :raises BookkeepingRejectedError: the backend refused, with its reason.
        :raises BookkeepingUnavailableError: the backend cannot be reached.
        """

    def register(self, cloud: str, node: dict, vm_type: str | None = None) -> dict | None:
        """Record a VM the cloud has (a NODE dict) as free; None where the backend learns alone."""
        return None

    def forget(self, cloud: str, node_id: str) -> None:
        """Note that the VM was destroyed through the dispatcher; nothing where it learns alone."""
        return None
