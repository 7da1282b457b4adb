"""The reconcile on EC2 (moto on loopback): instances made, stopped and terminated straight
through boto3, behind the dispatcher's back, are found as orphans, ghosts and mismatches,
and the fixes mend exactly what they should."""

import pytest
import sqlalchemy
from conftest import assert_error, token_client

from dispatcher.extensions import db
from dispatcher.models import BOOTING, DELETED, FAULTY, FREE, Assignment, AuditEntry
from dispatcher.pools import marks

SIZE = "t2.micro"
POOL = "web"
REQUEST_ID = "reconcile-test-request"


def run_instance(cloud, tags: dict | None = None) -> str:
    """An instance made straight through boto3, as another tool or a person would."""
    extra = {}
    if tags:
        pairs = [{"Key": key, "Value": value} for key, value in tags.items()]
        extra["TagSpecifications"] = [{"ResourceType": "instance", "Tags": pairs}]
    reservation = cloud.boto3_client().run_instances(
        ImageId=cloud.default_image_id(), InstanceType=SIZE, MinCount=1, MaxCount=1, **extra
    )
    return reservation["Instances"][0]["InstanceId"]


def state_of(cloud, node_id: str) -> str:
    reservation = cloud.boto3_client().describe_instances(InstanceIds=[node_id])
    return reservation["Reservations"][0]["Instances"][0]["State"]["Name"]


def ledger(app) -> dict[str, tuple]:
    with app.app_context():
        rows = db.session.scalars(sqlalchemy.select(Assignment))
        return {row.id_vm: (row.status, row.pool) for row in rows}


def item(id_vm, hostname, ledger_state, cloud_state, pool, fix) -> dict:
    return {
        "cloud": "aws",
        "id_vm": id_vm,
        "hostname": hostname,
        "ledger_state": ledger_state,
        "cloud_state": cloud_state,
        "pool": pool,
        "fix": fix,
    }


@pytest.fixture
def aws_app(make_app, cloud):
    pools = {
        POOL: {
            "clouds": [{"cloud": "aws", "image": cloud.default_image_id(), "size": SIZE}],
            "min_ready": 0,
            "max_total": 4,
        }
    }
    return make_app(CLOUD_FARM={"aws": cloud.farm_entry()}, POOLS=pools)


def test_orphans_ghosts_and_mismatches_found_and_fixed(aws_app, cloud):
    agent = token_client(aws_app)
    admin = token_client(aws_app, "boss", roles=("admin",))
    started = {}
    for name in ("vanishing", "stopping", "healthy"):
        body = {"name": name, "image": cloud.default_image_id(), "size": SIZE}
        started[name] = agent.post("/api/v1/vm/start/aws", json=body).json["nodes"]["id"]
    foreign = run_instance(cloud)
    tagged = run_instance(cloud, {marks.POOL_TAG: POOL, marks.CREATION_TAG: "0123456789ab"})
    ec2 = cloud.boto3_client()
    ec2.terminate_instances(InstanceIds=[started["vanishing"]])
    ec2.stop_instances(InstanceIds=[started["stopping"]])

    report = agent.get("/api/v1/reconcile/aws")

    assert report.status_code == 200, report.json
    # libcloud names an EC2 instance without a Name tag by its id.
    reported_only = "none: not the dispatcher's (destroy_orphans destroys it)"
    foreign_orphan = item(foreign, foreign, None, "running", None, reported_only)
    orphans = sorted(
        [foreign_orphan, item(tagged, tagged, None, "running", POOL, f"adopt into pool {POOL}")],
        key=lambda found: found["id_vm"],
    )
    ghost = item(started["vanishing"], "vanishing", "FREE", None, None, "mark DELETED")
    mismatch = item(started["stopping"], "stopping", "FREE", "stopped", None, "mark FAULTY")
    assert report.json["orphans"] == orphans
    assert report.json["ghosts"] == [ghost]
    assert report.json["mismatches"] == [mismatch]
    assert [(c["name"], c["status"], c["count"]) for c in report.json["clouds"]] == [
        ("aws", "ok", 5)
    ]
    dry = admin.post("/api/v1/reconcile/aws", json={})
    assert (dry.json["applied"], dry.json["ghosts"]) == (False, [ghost])
    refused = agent.post("/api/v1/reconcile/aws", json={"apply": True})
    assert_error(refused, 403, "Forbidden: this needs the role admin")
    assert ledger(aws_app)[started["vanishing"]] == (FREE, None)  # a dry run, a refusal

    applied = admin.post(
        "/api/v1/reconcile/aws", json={"apply": True}, headers={"X-Request-ID": REQUEST_ID}
    )

    assert applied.status_code == 200, applied.json
    assert applied.json["applied"] is True
    assert applied.json["ghosts"] == [{**ghost, "fix": "marked DELETED"}]
    assert applied.json["mismatches"] == [{**mismatch, "fix": "marked FAULTY"}]
    fixes = {found["id_vm"]: found["fix"] for found in applied.json["orphans"]}
    assert fixes == {tagged: f"adopted into pool {POOL}, booting", foreign: reported_only}
    books = ledger(aws_app)
    assert books[started["vanishing"]] == (DELETED, None)
    assert books[started["stopping"]] == (FAULTY, None)
    assert books[started["healthy"]] == (FREE, None)
    assert books[tagged] == (BOOTING, POOL)
    assert foreign not in books
    assert state_of(cloud, foreign) == "running"
    with aws_app.app_context():
        entries = db.session.scalars(
            sqlalchemy.select(AuditEntry).where(AuditEntry.action == "reconcile")
        ).all()
        assert sorted((e.id_vm, e.caller, e.outcome, e.request_id) for e in entries) == sorted(
            (node, "boss", "ok", REQUEST_ID)
            for node in (started["vanishing"], started["stopping"], tagged)
        )

    left = admin.get("/api/v1/reconcile/aws").json
    assert (left["orphans"], left["ghosts"], left["mismatches"]) == ([foreign_orphan], [], [])
    young = admin.post("/api/v1/reconcile/aws", json={"apply": True, "destroy_orphans": True})
    assert young.json["orphans"][0]["fix"].startswith("none: made ")
    assert "within RECONCILE_GRACE_SECONDS (600)" in young.json["orphans"][0]["fix"]
    assert state_of(cloud, foreign) == "running"
    aws_app.config["RECONCILE_GRACE_SECONDS"] = 0
    destroyed = admin.post("/api/v1/reconcile/aws", json={"apply": True, "destroy_orphans": True})
    assert destroyed.json["orphans"] == [{**foreign_orphan, "fix": "destroyed"}]
    assert state_of(cloud, foreign) in ("shutting-down", "terminated")

    empty = admin.get("/api/v1/reconcile/aws").json
    assert (empty["orphans"], empty["ghosts"], empty["mismatches"]) == ([], [], [])
