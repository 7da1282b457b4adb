"""LocalBookkeeper: the ledger in the dispatcher's own database."""

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import AmbiguousHostnameError, ConflictError
from ..extensions import db
from ..models import ASSIGNED, DELETED, FAULTY, FREE, Assignment, assigned_values
from ..serializers import assignment_to_dict
from .base import Bookkeeper, describe_holder


class LocalBookkeeper(Bookkeeper):
    """Assignment rows in the dispatcher's database; one winner by conditional UPDATE."""

    @classmethod
    def from_config(cls, config) -> "LocalBookkeeper":
        return cls()

    def nodes(self, cloud: str, with_faulty: bool = False) -> list[dict]:
        statuses = [FREE, ASSIGNED] + ([FAULTY] if with_faulty else [])
        rows = db.session.scalars(
            select(Assignment)
            .where(Assignment.cloud == cloud, Assignment.status.in_(statuses))
            .order_by(Assignment.id)
        )
        return [assignment_to_dict(row) for row in rows]

    def books(self, cloud: str) -> list[dict]:
        rows = db.session.scalars(
            select(Assignment)
            .where(Assignment.cloud == cloud, Assignment.status != DELETED)
            .order_by(Assignment.id)
        )
        return [{**assignment_to_dict(row), "pool": row.pool} for row in rows]

    def _rows(self, cloud: str, node_id=None, hostname=None) -> list[Assignment]:
        match = (
            Assignment.id_vm == node_id if node_id is not None else Assignment.hostname == hostname
        )
        return list(
            db.session.scalars(
                select(Assignment).where(
                    Assignment.cloud == cloud, Assignment.status != DELETED, match
                )
            )
        )

    def find(self, cloud: str, node_id=None, hostname=None) -> dict | None:
        rows = self._rows(cloud, node_id, hostname)
        if len(rows) > 1:
            raise AmbiguousHostnameError(hostname, [row.id_vm for row in rows])
        return assignment_to_dict(rows[0]) if rows else None

    def register(self, cloud: str, node: dict, vm_type: str | None = None) -> dict:
        """Record the node as free; an existing row is kept (or revived if it was deleted)."""
        try:
            with db.session.begin_nested():
                row = Assignment(
                    cloud=cloud,
                    id_vm=node["id"],
                    hostname=node["name"],
                    recipe=vm_type,
                    status=FREE,
                )
                db.session.add(row)
        except IntegrityError:
            # Known already, perhaps registered by another process this very moment.
            row = db.session.scalars(
                select(Assignment).where(Assignment.cloud == cloud, Assignment.id_vm == node["id"])
            ).one()
            if row.status == DELETED:  # a driver that reuses ids (Dummy): a new VM
                row.status, row.hostname, row.recipe, row.user = FREE, node["name"], vm_type, None
                row.assigned_by = row.expires_at = row.lease_warned_at = None
        db.session.commit()
        return assignment_to_dict(row)

    def adopt(self, cloud: str, wanted: str, fetch_node, emulate: bool) -> dict:
        """Register the VM the cloud has (only pictured, in a dry run)."""
        found = fetch_node()
        if emulate:
            return {"id": None, "id_vm": found["id"], "hostname": found["name"], "status": FREE}
        return self.register(cloud, found)

    def _change(self, row: dict, expected: int, **values):
        """Move the row from ``expected``, with ``values``: one conditional UPDATE, so that
        of two requests one wins, which gets the row's ``id`` and ``id_vm`` back with it.

        :raises ConflictError: the row was not ``expected``; the message names its holder.
        """
        won = db.session.execute(
            update(Assignment)
            .where(Assignment.id == row["id"], Assignment.status == expected)
            .values(updated_at=func.now(), **values)
            .returning(Assignment.id, Assignment.id_vm)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if won is None:
            current = db.session.get(Assignment, row["id"], populate_existing=True)
            raise ConflictError(describe_holder(assignment_to_dict(current)))
        return won

    def assign(
        self, cloud: str, row: dict, user: str, vm_type: str, assigned_by=None, expires_at=None
    ) -> dict:
        won = self._change(row, FREE, **assigned_values(user, vm_type, assigned_by, expires_at))
        return {"id_vm": won.id_vm, "id": won.id, "result": f"Node {won.id_vm} assigned"}

    def release(self, cloud: str, row: dict, retire: bool = False) -> dict:
        values = {"status": FREE, "user": None, "assigned_at": None, "assigned_by": None}
        values.update(expires_at=None, lease_warned_at=None)
        if retire:
            # A retired VM keeps the end of its lease: the pool manager finishes the
            # destroy of a leased VM that outlived it (leases.records.left_running).
            values.update(status=FAULTY, expires_at=Assignment.expires_at)
        won = self._change(row, ASSIGNED, **values)
        return {"id_vm": won.id_vm, "id": won.id, "result": f"Node {won.id_vm} released"}

    def forget(self, cloud: str, node_id: str) -> None:
        db.session.execute(
            update(Assignment)
            .where(Assignment.cloud == cloud, Assignment.id_vm == node_id)
            .values(status=DELETED, user=None, expires_at=None, updated_at=func.now())
        )
        db.session.commit()

    def sync(self, cloud: str, list_nodes) -> dict:
        """Register the cloud's nodes the ledger lacks; mark faulty the rows whose VM is gone."""
        nodes = list_nodes()
        known = set(
            db.session.scalars(
                select(Assignment.id_vm).where(
                    Assignment.cloud == cloud, Assignment.status != DELETED
                )
            )
        )
        present = {node["id"] for node in nodes}
        registered = 0
        for node in nodes:
            if node["id"] not in known:
                self.register(cloud, node)
                registered += 1
        vanished = known - present
        faulty = 0
        if vanished:
            faulty = db.session.execute(
                update(Assignment)
                .where(
                    Assignment.cloud == cloud,
                    Assignment.id_vm.in_(vanished),
                    or_(Assignment.status == FREE, Assignment.status == ASSIGNED),
                )
                .values(status=FAULTY, updated_at=func.now())
            ).rowcount
        db.session.commit()
        return {"registered": registered, "faulty": faulty}
