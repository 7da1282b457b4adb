"""Leases on EC2, served by moto on loopback: a lease of 2 s ends, and the pool manager's
next pass releases the VM: destroyed, or back to free in a pool that reuses its VMs."""

import datetime
import time

import pytest
import sqlalchemy
from conftest import assert_error, token_client

from dispatcher import pools
from dispatcher.extensions import db
from dispatcher.models import DELETED, FREE, Assignment, AuditEntry
from dispatcher.operations import leases as expiry
from dispatcher.worker import lease_expiry, pool_pass

SIZE = "t2.micro"


def state_of(ec2, node_id: str) -> str:
    reservation = ec2.describe_instances(InstanceIds=[node_id])["Reservations"][0]
    return reservation["Instances"][0]["State"]["Name"]


def when(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def wait_until(moment: datetime.datetime) -> None:
    left = (moment - datetime.datetime.now(datetime.UTC)).total_seconds()
    time.sleep(max(0.0, left) + 0.05)


def lease_entries(app) -> list[tuple]:
    with app.app_context():
        entries = db.session.scalars(
            sqlalchemy.select(AuditEntry)
            .where(AuditEntry.caller == expiry.CALLER)
            .order_by(AuditEntry.id)
        )
        return [(entry.action, entry.id_vm, entry.outcome, entry.message) for entry in entries]


def status_of(app, node_id: str) -> int:
    with app.app_context():
        return db.session.scalar(
            sqlalchemy.select(Assignment.status).where(Assignment.id_vm == node_id)
        )


@pytest.fixture
def aws_app(make_app, cloud):
    farm = {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()}
    return make_app(CLOUD_FARM=farm, MAX_LEASE=3600)


def test_a_two_second_lease_ends_and_the_next_pass_destroys_the_vm(aws_app, cloud):
    client = token_client(aws_app)
    ec2 = cloud.boto3_client()
    body = {"name": "leased", "image": cloud.default_image_id(), "size": SIZE}
    node_id = client.post("/api/v1/vm/start/aws", json=body).json["nodes"]["id"]
    assign = {"node": node_id, "user": "zeppolo", "vm_type": "app"}

    beyond = client.put("/api/v1/vm/action/assign/aws", json={**assign, "lease": 3601})
    assert_error(beyond, 400, "lease: 3601 s is longer than the cap of 3600 s (MAX_LEASE)")
    leased = client.put("/api/v1/vm/action/assign/aws", json={**assign, "lease": 2})
    assert leased.status_code == 200, leased.json
    extended = client.put("/api/v1/vm/action/extend/aws", json={"node": node_id, "lease": 3})
    assert extended.status_code == 200, extended.json
    assert when(extended.json["expires_at"]) > when(leased.json["expires_at"])
    with aws_app.app_context():
        assert lease_expiry.run().released == 0  # not yet
    assert state_of(ec2, node_id) == "running"

    wait_until(when(extended.json["expires_at"]))
    with aws_app.app_context():
        report = lease_expiry.run()

    assert (report.released, report.problems) == (1, [])
    assert state_of(ec2, node_id) == "terminated"
    assert status_of(aws_app, node_id) == DELETED
    assert lease_entries(aws_app) == [
        ("release", node_id, "ok", f"Node {node_id} released and deleted")
    ]
    assert cloud.actions().count("TerminateInstances") == 1


def test_a_pool_that_reuses_its_vms_takes_one_back_free_at_the_end_of_its_lease(make_app, cloud):
    farm = {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()}
    spec = {"cloud": "aws", "image": cloud.default_image_id(), "size": SIZE}
    app = make_app(
        CLOUD_FARM=farm,
        POOLS={"web": {"clouds": [spec], "min_ready": 1, "max_total": 1, "release": "reuse"}},
    )
    client = token_client(app)
    with app.app_context():
        pool_pass.run(pools.every())  # made
        pool_pass.run(pools.every())  # running: free
    taken = client.put(
        "/api/v1/vm/action/assign", json={"vm_type": "web", "user": "zeppolo", "lease": 2}
    )
    assert taken.status_code == 200, taken.json
    node_id = taken.json["id_vm"]

    wait_until(when(taken.json["expires_at"]))
    with app.app_context():
        assert lease_expiry.run().released == 1

    assert status_of(app, node_id) == FREE
    assert state_of(cloud.boto3_client(), node_id) == "running"
    assert cloud.actions().count("TerminateInstances") == 0
    assert lease_entries(app)[0][:3] == ("release", node_id, "ok")
    again = client.put("/api/v1/vm/action/assign", json={"vm_type": "web", "user": "next"})
    assert again.json["id_vm"] == node_id
