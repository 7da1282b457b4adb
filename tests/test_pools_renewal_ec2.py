"""A pool's image changed on EC2 (moto on loopback): once the manager runs with the new
POOLS, its free VMs run the new image within two passes, never fewer than min_ready free
at a pass, and an assigned VM of the old image is terminated on its release."""

import pytest
import sqlalchemy
from conftest import token_client

from dispatcher import pools
from dispatcher.extensions import db
from dispatcher.models import DELETED, FREE, Assignment
from dispatcher.worker import pool_pass

READY = 3
RELEASE = "/api/v1/vm/action/release/default"


def pool(image: str) -> dict:
    entry = {"cloud": "default", "image": image, "size": "t2.micro"}
    return {
        "web": {"clouds": [entry], "min_ready": READY, "max_total": READY + 1, "release": "reuse"}
    }


def run_pass(app) -> None:
    with app.app_context():
        report = pool_pass.run(pools.every())[0]
    assert not report.problems, report.problems


def free_vms(app) -> set[str]:
    with app.app_context():
        return set(
            db.session.scalars(
                sqlalchemy.select(Assignment.id_vm).where(
                    Assignment.pool == "web", Assignment.status == FREE
                )
            )
        )


def images(cloud, ids) -> dict[str, str]:
    """Each instance's image and state, as EC2 tells them (boto3)."""
    if not ids:
        return {}
    found = cloud.boto3_client().describe_instances(InstanceIds=sorted(ids))
    return {
        instance["InstanceId"]: (instance["ImageId"], instance["State"]["Name"])
        for reservation in found["Reservations"]
        for instance in reservation["Instances"]
    }


@pytest.fixture
def two_images(cloud) -> tuple[str, str]:
    listed = cloud.boto3_client().describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn-ami-*"]}]
    )["Images"]
    first, second = sorted(image["ImageId"] for image in listed)[:2]
    return first, second


def test_a_new_image_rolls_the_free_vms_and_ends_the_old_assigned_one_on_release(
    make_app, cloud, two_images
):
    old_image, new_image = two_images
    farm = {"default": cloud.farm_entry()}
    before = make_app(CLOUD_FARM=farm, POOLS=pool(old_image))
    run_pass(before)
    run_pass(before)
    held = (
        token_client(before)
        .put("/api/v1/vm/action/assign", json={"user": "u", "vm_type": "web"})
        .get_json()["id_vm"]
    )
    run_pass(before)
    run_pass(before)
    old = free_vms(before)
    assert len(old) == READY
    assert {image for image, _ in images(cloud, old | {held}).values()} == {old_image}

    # The operator changes the image and starts the manager again.
    after = make_app(CLOUD_FARM=farm, POOLS=pool(new_image))
    free_counts = []
    for _ in range(2):
        run_pass(after)
        free_counts.append(len(free_vms(after)))
    assert min(free_counts) >= READY
    now_free = free_vms(after)
    assert len(now_free) == READY
    assert {image for image, _ in images(cloud, now_free).values()} == {new_image}
    assert {state for _, state in images(cloud, old).values()} <= {"shutting-down", "terminated"}

    released = token_client(after).put(RELEASE, json={"node": held}).get_json()
    assert released["result"] == f"Node {held} released and deleted"
    assert images(cloud, {held})[held][1] in ("shutting-down", "terminated")
    with after.app_context():
        row = db.session.scalars(
            sqlalchemy.select(Assignment).where(Assignment.id_vm == held)
        ).one()
        assert row.status == DELETED
