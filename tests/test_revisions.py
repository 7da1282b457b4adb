"""The quota rules and the pools' overrides kept by each process, on SQLite and
PostgreSQL: two apps on one database, as two workers. One keeps what it read while the
tables' revisions hold, and reads them no more; an admin's change through the other binds
its next assign or release all the same, by node and from a pool, whether it kept the
rules before the change or decided by them when the change came, in a transaction or
in the one statement of an assign that nothing else holds a transaction for."""

import pytest
import sqlalchemy
from conftest import served, token_client

from dispatcher import pools, revisions
from dispatcher.extensions import db
from dispatcher.models import ASSIGNED, DELETED, FREE, Assignment, AuditEntry, QuotaRule
from dispatcher.worker import pool_pass

ASSIGN = "/api/v1/vm/action/assign"
WEB = {
    "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
    "min_ready": 3,
    "max_total": 3,
    "release": "reuse",
}


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


@pytest.fixture
def apps(make_app):
    """Two apps on one database with the pool web of 3 free VMs (made by the first, whose
    Dummy cloud holds them): the one that serves, keeping verified tokens as a serving
    process does (an assign from a pool is then one statement, on PostgreSQL), and the
    admin's."""
    serving = served(make_app(POOLS={"web": WEB}, RELEASE_KEEPS_NODE=True))
    with serving.app_context():
        for _ in range(2):
            pool_pass.run(pools.every())
    return serving, make_app(POOLS={"web": WEB}, RELEASE_KEEPS_NODE=True)


def take(client, vm_type="web"):
    return client.put(ASSIGN, json={"user": "someone", "vm_type": vm_type})


def release(client, node: str):
    return client.put("/api/v1/vm/action/release/default", json={"node": node})


def ledger(app) -> dict[str, tuple]:
    """Every VM of the ledger: its status and holder, by node id."""
    with app.app_context():
        rows = db.session.execute(
            sqlalchemy.select(Assignment.id_vm, Assignment.status, Assignment.user)
        )
        return {id_vm: (status, user) for id_vm, status, user in rows}


def outcomes(app) -> list[tuple]:
    """The history: (caller, action, outcome), oldest first."""
    with app.app_context():
        query = sqlalchemy.select(AuditEntry.caller, AuditEntry.action, AuditEntry.outcome)
        return [tuple(row) for row in db.session.execute(query.order_by(AuditEntry.id))]


def kept(app, table: str):
    """The revision of ``table`` that the app keeps its copy at; None: it keeps none."""
    with app.app_context():
        found = app.extensions.get(revisions.EXTENSION, {}).get(table)
        return None if found is None else found[0]


def count_rules(app) -> int:
    with app.app_context():
        return db.session.scalar(sqlalchemy.select(sqlalchemy.func.count(QuotaRule.id)))


def test_a_rule_set_elsewhere_refuses_the_assign_that_decided_by_the_rules_kept_before(apps):
    serving, admins = apps
    ada, boss = token_client(serving, "ada"), token_client(admins, "boss", roles=("admin",))
    first = take(ada)
    assert first.status_code == 200, first.json
    assert kept(serving, revisions.QUOTA_RULES) == 0

    refusing = boss.put("/api/v1/quotas/user/ada", json={"pools": ["gpu-only"]})
    assert refusing.status_code == 400  # an unknown pool: nothing set, the revision kept
    assert boss.put("/api/v1/quotas/user/ada", json={"max_vms": 1}).status_code == 200
    refused = take(ada)

    assert refused.status_code == 403, refused.json
    assert refused.json["message"] == "quota: user ada holds 1 of 1 VMs (rule user ada)"
    held = [node for node, (status, _) in ledger(serving).items() if status == ASSIGNED]
    assert held == [first.json["id_vm"]]  # the VM the first decision took, given back
    assert outcomes(serving).count(("ada", "assign", "ok")) == 1
    assert outcomes(serving)[-1] == ("ada", "assign", "quota")
    assert kept(serving, revisions.QUOTA_RULES) == 1


def test_a_rule_removed_elsewhere_lets_the_assign_the_kept_rule_would_refuse(apps):
    serving, admins = apps
    ada, boss = token_client(serving, "ada"), token_client(admins, "boss", roles=("admin",))
    assert boss.put("/api/v1/quotas/user/ada", json={"max_vms": 1}).status_code == 200
    assert take(ada).status_code == 200
    assert take(ada).status_code == 403  # the rule, read and kept
    assert kept(serving, revisions.QUOTA_RULES) == 1

    assert boss.delete("/api/v1/quotas/user/ada").status_code == 200
    again = take(ada)

    assert again.status_code == 200, again.json
    assert count_rules(serving) == 0
    assert kept(serving, revisions.QUOTA_RULES) == 2


def test_an_assign_by_node_decides_by_the_rules_at_the_revision_its_lookup_saw(apps):
    serving, admins = apps
    ada, boss = token_client(serving, "ada"), token_client(admins, "boss", roles=("admin",))
    by_node = "/api/v1/vm/action/assign/fake_driver"
    freeing = "/api/v1/vm/action/release/fake_driver"
    assigned = ada.put(by_node, json={"node": "1", "user": "ada", "vm_type": "app"})
    assert assigned.status_code == 200, assigned.json  # adopted, the rules read and kept
    assert ada.put(freeing, json={"node": "1"}).status_code == 200
    assert ada.put(by_node, json={"node": "1", "user": "ada", "vm_type": "app"}).status_code == 200

    assert boss.put("/api/v1/quotas/user/ada", json={"max_vms": 1}).status_code == 200
    refused = ada.put(by_node, json={"node": "2", "user": "ada", "vm_type": "app"})
    assert refused.status_code == 403, refused.json
    assert refused.json["message"] == "quota: user ada holds 1 of 1 VMs (rule user ada)"

    assert boss.delete("/api/v1/quotas/user/ada").status_code == 200
    admitted = ada.put(by_node, json={"node": "2", "user": "ada", "vm_type": "app"})
    assert admitted.status_code == 200, admitted.json


def test_a_drain_set_elsewhere_binds_the_next_release_and_its_end_the_one_after(apps):
    serving, admins = apps
    ada, boss = token_client(serving, "ada"), token_client(admins, "boss", roles=("admin",))
    first, second = take(ada).json["id_vm"], take(ada).json["id_vm"]
    assert release(ada, first).json["result"] == f"Node {first} released"
    assert kept(serving, revisions.POOL_OVERRIDES) == 0
    first = take(ada).json["id_vm"]

    assert boss.patch("/api/v1/pools/web", json={"draining": True}).status_code == 200
    drained = release(ada, first)
    assert drained.status_code == 200, drained.json
    assert drained.json["result"] == f"Node {first} released and deleted"
    assert ledger(serving)[first][0] == DELETED

    assert boss.patch("/api/v1/pools/web", json={"draining": False}).status_code == 200
    kept_free = release(ada, second)
    assert kept_free.json["result"] == f"Node {second} released"
    assert ledger(serving)[second] == (FREE, None)
    assert kept(serving, revisions.POOL_OVERRIDES) == 2


def test_every_change_of_a_rule_or_an_override_raises_its_revision_once(apps):
    serving, admins = apps
    boss = token_client(admins, "boss", roles=("admin",))

    def now(table: str) -> int:
        with serving.app_context():
            return revisions.read(table)

    assert (now(revisions.QUOTA_RULES), now(revisions.POOL_OVERRIDES)) == (0, 0)
    assert boss.put("/api/v1/quotas/user/boss", json={"max_vms": 2}).status_code == 200
    assert boss.put("/api/v1/quotas/user/boss", json={"max_vms": 3}).status_code == 200
    assert boss.delete("/api/v1/quotas/user/boss").status_code == 200
    assert boss.delete("/api/v1/quotas/user/boss").status_code == 404  # nothing to remove
    assert boss.patch("/api/v1/pools/web", json={"paused": True}).status_code == 200
    assert boss.patch("/api/v1/pools/web", json={"paused": False}).status_code == 200  # gone
    assert boss.delete("/api/v1/pools/web").status_code == 404  # no override left

    assert (now(revisions.QUOTA_RULES), now(revisions.POOL_OVERRIDES)) == (3, 2)
