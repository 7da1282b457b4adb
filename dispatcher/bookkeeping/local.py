"""LocalBookkeeper: the ledger in the dispatcher's own database (``ledger``)."""

from sqlalchemy import Row

from ..errors import AmbiguousHostnameError, ConflictError
from ..models import ASSIGNED, FAULTY, FREE, Assignment
from ..serializers import assignment_to_dict
from . import ledger
from .base import Bookkeeper, describe_holder


class Found(dict):
    """An ASSIGNMENT dict that keeps the ledger's row it was made from (``row``, its
    columns as read), so that ``ledger_row`` gives the row back without reading it
    again."""

    __slots__ = ("row",)

    def __init__(self, row: Row):
        super().__init__(assignment_to_dict(row))
        self.row = row


def released(id_vm) -> str:
    """How the answer and the history tell of a release: ``Node <id> released``."""
    return f"Node {id_vm} released"


class LocalBookkeeper(Bookkeeper):
    """Assignment rows in the dispatcher's database; one winner by conditional UPDATE."""

    keeps_leases = True
    keeps_tags = True
    keeps_spans = True
    keeps_quotas = True
    keeps_pools = True
    mends_books = True

    @classmethod
    def from_config(cls, config) -> "LocalBookkeeper":
        return cls()

    def nodes(self, cloud: str, with_faulty: bool = False) -> list[dict]:
        statuses = [FREE, ASSIGNED] + ([FAULTY] if with_faulty else [])
        return [assignment_to_dict(row) for row in ledger.listed(cloud, statuses)]

    def books(self, cloud: str) -> list[dict]:
        return [{**assignment_to_dict(row), "pool": row.pool} for row in ledger.live(cloud)]

    def find(self, cloud: str, node_id=None, hostname=None) -> dict | None:
        rows = ledger.columns_of(cloud, node_id, hostname)
        if len(rows) > 1:
            raise AmbiguousHostnameError(hostname, [row.id_vm for row in rows])
        return Found(rows[0]) if rows else None

    def find_or_release(
        self, cloud: str, node_id: str, keeping: ledger.Keeping, record, entry: dict
    ) -> dict | None:
        row = ledger.release_kept(cloud, node_id, keeping, record, entry)
        return Found(row) if row is not None else None

    def ledger_row(self, row: dict) -> Assignment | Row | None:
        return row.row if isinstance(row, Found) else ledger.get(row["id"])

    def register(self, cloud: str, node: dict, vm_type: str | None = None) -> dict:
        """Record the node as free; an existing row is kept (or revived if it was deleted)."""
        return assignment_to_dict(ledger.register(cloud, node, vm_type))

    def adopt(self, cloud: str, wanted: str, fetch_node, emulate: bool) -> dict:
        """Register the VM the cloud has (only pictured, in a dry run)."""
        found = fetch_node()
        if emulate:
            return {"id": None, "id_vm": found["id"], "hostname": found["name"], "status": FREE}
        return self.register(cloud, found)

    @staticmethod
    def _won(row: dict, won) -> dict:
        """The answer of the one request whose change took the row.

        :raises ConflictError: another change came first; the message names the holder.
        """
        if won is None:
            current = ledger.get(row["id"], fresh=True)
            ledger_state = assignment_to_dict(current) if current is not None else row
            raise ConflictError(describe_holder(ledger_state))
        return {"id_vm": won.id_vm, "id": won.id}

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
        taken = ledger.assign(row["id"], user, vm_type, assigned_by, expires_at, tags)
        won = self._won(row, taken)
        return {**won, "result": f"Node {won['id_vm']} assigned"}

    def release(
        self, cloud: str, row: dict, retire: bool = False, alone: ledger.Alone | None = None
    ) -> dict:
        """``alone``: with its history entry, one statement (``ledger.Alone``)."""
        won = self._won(row, ledger.release(row["id"], retire, alone))
        return {**won, "result": released(won["id_vm"])}

    def forget(self, cloud: str, node_id: str) -> None:
        ledger.forget(cloud, node_id)
