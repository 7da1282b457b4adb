"""The firewall and storage examples, run against a live server whose cloud is moto's EC2."""

import json
import os
import runpy
import subprocess
import sys

import pytest
from helpers import ADMIN_PASSWORD, EXAMPLES, Server

from harness.ec2_cloud import Ec2Cloud
from harness.gunicorn_server import ROOT


@pytest.fixture(scope="module")
def cloud():
    with Ec2Cloud() as moto:
        yield moto


@pytest.fixture
def server(tmp_path, cloud):
    """`dispatcher run` with the clouds default (Dummy) and aws (moto), from a settings file."""
    cloud.reset()
    farm = {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()}
    server = Server(
        tmp_path / "instance", {"CLOUD_FARM": farm}, DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD
    )
    yield server
    server.stop()


def run_example(server, *args):
    env = {**os.environ, "BASE_URL": server.base, "DISPATCHER_PASSWORD": ADMIN_PASSWORD}
    result = subprocess.run(
        [str(EXAMPLES / args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(answer["status"] == "ok" for answer in answers)
    return answers


def group_names(cloud) -> list[str]:
    return [
        g["GroupName"] for g in cloud.boto3_client().describe_security_groups()["SecurityGroups"]
    ]


def test_firewall_example(server, cloud):
    """firewall.sh creates a group, opens and closes tcp 22 from 10.0.0.0/8, deletes it."""
    created, opened, listed, closed, deleted = run_example(server, "firewall.sh", "aws")
    rule = {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"}
    assert opened["result"] == "opened"
    assert opened["group"]["rules"] == [rule]
    assert created["group"]["name"] in [group["name"] for group in listed["groups"]]
    assert closed == {"status": "ok", "group": {**opened["group"], "rules": []}, "result": "closed"}
    assert deleted == {"status": "ok", "result": f"Group {created['group']['id']} deleted"}
    assert created["group"]["name"] not in group_names(cloud)


def test_storage_example(server, cloud):
    """storage.sh runs a volume through create, attach, detach and destroy around a VM."""
    answers = run_example(server, "storage.sh", "aws", cloud.default_image_id(), "t2.micro")
    volume = answers[1]["volume"]["id"]
    node = answers[0]["nodes"]["id"]
    assert [answer.get("result") for answer in answers[2:]] == [
        f"Volume {volume} attached to node {node}",
        f"Volume {volume} detached",
        f"Volume {volume} destroyed",
        f"Node {node} deleted",
    ]
    ec2 = cloud.boto3_client()
    assert volume not in [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]]


def test_a_failing_storage_example_leaves_nothing_behind(server, cloud):
    """storage.sh stopped by a refused step (a DEVICE too long) removes its volume and VM."""
    env = {**os.environ, "BASE_URL": server.base, "DISPATCHER_PASSWORD": ADMIN_PASSWORD}
    args = [str(EXAMPLES / "storage.sh"), "aws", cloud.default_image_id(), "t2.micro", "d" * 300]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "device: at most 255 characters" in result.stdout + result.stderr
    ec2 = cloud.boto3_client()
    assert ec2.describe_volumes()["Volumes"] == []
    states = [
        instance["State"]["Name"]
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    ]
    assert states and set(states) <= {"terminated", "shutting-down"}


def test_the_emulation_the_examples_readme_shows(tmp_path):
    """`python -m harness.ec2_cloud SETTINGS`, then `dispatcher run` on those settings:
    firewall.sh runs green against it, as api_call_examples/README.md says."""
    settings = tmp_path / "ec2-settings.py"
    # As a context manager, Popen closes its pipe at the end.
    with subprocess.Popen(
        [sys.executable, "-m", "harness.ec2_cloud", str(settings)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as emulation:
        try:
            assert "cloud `aws` in" in emulation.stdout.readline()
            assert emulation.stdout.readline().startswith("an image: ami-")
            # Its CLOUD_FARM, beside the suite's settings (the cheap password hash).
            farm = runpy.run_path(str(settings))["CLOUD_FARM"]
            server = Server(
                tmp_path / "instance",
                {"CLOUD_FARM": farm},
                DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD,
            )
            try:
                answers = run_example(server, "firewall.sh", "aws")
            finally:
                server.stop()
            assert answers[-1]["result"].endswith(" deleted")
        finally:
            emulation.terminate()
            assert emulation.wait(timeout=15) == 0
