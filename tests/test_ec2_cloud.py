"""The moto EC2 harness answers libcloud's EC2 driver as real EC2 does, and logs its requests."""

from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from libcloud.common.exceptions import BaseHTTPError
from libcloud.compute.types import NodeState, StorageVolumeState

from harness.ec2_cloud import INSUFFICIENT_CAPACITY, Ec2Cloud, _one_based


@pytest.fixture(scope="module")
def server():
    """One moto server for the module: starting moto's EC2 backend costs about a second."""
    with Ec2Cloud() as cloud:
        yield cloud


@pytest.fixture
def cloud(server):
    """The module's server with its request log emptied; tests look at their own nodes only."""
    server.clear()
    return server


@pytest.fixture
def driver(cloud):
    """A libcloud EC2 driver on the server, built from its CLOUD_FARM entry."""
    return cloud.driver()


@pytest.fixture
def node(cloud, driver):
    """A t2.micro node from one of moto's AMIs, with the request log emptied after it."""
    image = driver.get_image(cloud.default_image_id())
    size = next(s for s in driver.list_sizes() if s.id == "t2.micro")
    node = driver.create_node(name="vm1", image=image, size=size)
    cloud.clear()
    return node


def instance(cloud, node_id):
    """The instance as moto holds it, looked up outside libcloud."""
    (reservation,) = cloud.boto3_client().describe_instances(InstanceIds=[node_id])["Reservations"]
    return reservation["Instances"][0]


def test_farm_entry(cloud):
    entry = cloud.farm_entry(timeout=5)
    assert entry == {
        "ENGINE": "ec2",
        "USER": Ec2Cloud.key,
        "PASSWORD": Ec2Cloud.secret,
        "EXTRA_PARAMS": {
            "host": "127.0.0.1",
            "port": cloud.port,
            "secure": False,
            "region": "us-east-1",
            "signature_version": "4",
            "timeout": 5,
        },
    }


def test_list_nodes_on_a_fresh_cloud(cloud, driver):
    cloud.reset()
    assert driver.list_nodes() == []
    assert cloud.actions() == ["DescribeInstances"]


def test_get_image_asks_for_that_image_only(cloud, driver):
    image_id = cloud.default_image_id()
    image = driver.get_image(image_id)
    assert image.id == image_id
    assert image.name.startswith("amzn-ami-")
    assert cloud.actions() == ["DescribeImages"]
    (params,) = cloud.requests("DescribeImages")
    assert params["ImageId.1"] == image_id
    assert not any(key.startswith(("Owner", "Filter", "ExecutableBy")) for key in params)


def test_create_node_makes_one_request(cloud, driver):
    image = driver.get_image(cloud.default_image_id())
    size = next(s for s in driver.list_sizes() if s.id == "t2.micro")
    cloud.clear()
    node = driver.create_node(name="vm1", image=image, size=size)
    assert cloud.actions() == ["RunInstances"]
    assert node.name == "vm1"
    assert instance(cloud, node.id)["InstanceType"] == "t2.micro"
    (listed,) = driver.list_nodes(ex_node_ids=[node.id])
    assert (listed.id, listed.name, listed.state) == (node.id, "vm1", NodeState.RUNNING)


def test_list_nodes_by_id(cloud, driver, node):
    (listed,) = driver.list_nodes(ex_node_ids=[node.id])
    assert listed.id == node.id
    assert cloud.count("DescribeInstances", **{"InstanceId.1": node.id}) == 1


def test_reboot_node(cloud, driver, node):
    assert driver.reboot_node(node) is True
    assert cloud.actions() == ["RebootInstances"]


def test_destroy_node(cloud, driver, node):
    assert driver.destroy_node(node) is True
    assert cloud.actions() == ["TerminateInstances"]
    assert instance(cloud, node.id)["State"]["Name"] == "terminated"
    # Terminated instances stay listed for a while, as on real EC2.
    (listed,) = driver.list_nodes(ex_node_ids=[node.id])
    assert listed.state == NodeState.TERMINATED


def test_create_tags(cloud, driver, node):
    assert driver.ex_create_tags(node, {"role": "web", "team": "ops"}) is True
    # Logged as libcloud sent it, numbered from 0; moto saw it numbered from 1.
    assert cloud.requests("CreateTags") == [
        {
            "Action": "CreateTags",
            "ResourceId.0": node.id,
            "Tag.0.Key": "role",
            "Tag.0.Value": "web",
            "Tag.1.Key": "team",
            "Tag.1.Value": "ops",
            "Version": "2016-11-15",
        }
    ]
    tags = {t["Key"]: t["Value"] for t in instance(cloud, node.id)["Tags"]}
    assert tags == {"Name": "vm1", "role": "web", "team": "ops"}
    assert driver.ex_delete_tags(node, {"team": "ops"}) is True
    assert driver.list_nodes(ex_node_ids=[node.id])[0].extra["tags"] == {
        "Name": "vm1",
        "role": "web",
    }


def test_volume_round_trip(cloud, driver, node):
    client = cloud.boto3_client()
    volume = driver.create_volume(8, "data")
    assert client.describe_volumes(VolumeIds=[volume.id])["Volumes"][0]["Size"] == 8

    assert driver.attach_volume(node, volume, "/dev/sdh") is True
    (attachment,) = client.describe_volumes(VolumeIds=[volume.id])["Volumes"][0]["Attachments"]
    assert (attachment["InstanceId"], attachment["Device"]) == (node.id, "/dev/sdh")

    # libcloud names no instance, as real EC2 allows.
    assert driver.detach_volume(volume) is True
    (params,) = cloud.requests("DetachVolume")
    assert "InstanceId" not in params
    (listed,) = [v for v in driver.list_volumes() if v.id == volume.id]
    assert listed.state == StorageVolumeState.AVAILABLE

    assert driver.destroy_volume(volume) is True
    assert volume.id not in [v.id for v in driver.list_volumes()]
    assert cloud.actions() == [
        "DescribeAvailabilityZones",
        "CreateVolume",
        "CreateTags",
        "AttachVolume",
        "DetachVolume",
        "DescribeVolumes",
        "DeleteVolume",
        "DescribeVolumes",
    ]


def test_public_images(cloud, driver):
    ids = cloud.add_public_images(3, name="many")
    assert cloud.count() == 0
    listed = cloud.boto3_client().describe_images(Filters=[{"Name": "name", "Values": ["many-*"]}])
    assert sorted(i["ImageId"] for i in listed["Images"]) == sorted(ids)
    assert all(i["Public"] for i in listed["Images"])
    images = driver.list_images(ex_filters={"name": "many-*"})
    assert sorted(i.id for i in images) == sorted(ids)
    assert cloud.count("DescribeImages") == 1


def test_count_and_clear(cloud, driver):
    driver.list_volumes()
    driver.list_key_pairs()
    driver.list_volumes()
    assert cloud.actions() == ["DescribeVolumes", "DescribeKeyPairs", "DescribeVolumes"]
    assert cloud.count() == 3
    assert cloud.count("DescribeVolumes") == 2
    assert cloud.count("DescribeImages") == 0
    cloud.clear()
    assert cloud.actions() == []


def test_hold_keeps_the_answer_back_after_moto_acted(cloud, driver):
    """A held Action is done in moto at once; its client waits until the hold is released."""
    image = driver.get_image(cloud.default_image_id())
    size = next(s for s in driver.list_sizes() if s.id == "t2.micro")
    with cloud.hold("RunInstances") as held, ThreadPoolExecutor(1) as pool:
        created = pool.submit(driver.create_node, name="held", image=image, size=size)
        assert held.wait(1, timeout=30)
        running = cloud.boto3_client().describe_instances(
            Filters=[{"Name": "tag:Name", "Values": ["held"]}]
        )["Reservations"]
        assert len(running) == 1
        assert not wait([created], timeout=0.3).done
        held.release()
        node = created.result(timeout=30)
    assert node.id == running[0]["Instances"][0]["InstanceId"]
    assert held.count == 1


def test_refuse_answers_ec2s_error_for_the_requests_it_names_only(cloud, driver):
    """While refused, a RunInstances of that InstanceType gets EC2's error as libcloud reads it,
    and moto runs nothing; another type runs; after the block the refused type runs again."""
    cloud.reset()
    image = driver.get_image(cloud.default_image_id())
    sizes = {s.id: s for s in driver.list_sizes()}
    with cloud.refuse("RunInstances", *INSUFFICIENT_CAPACITY, InstanceType="m5.large"):
        with pytest.raises(BaseHTTPError) as caught:
            driver.create_node(name="big", image=image, size=sizes["m5.large"])
        small = driver.create_node(name="small", image=image, size=sizes["t3.micro"])
    after = driver.create_node(name="big", image=image, size=sizes["m5.large"])

    code, message, status = INSUFFICIENT_CAPACITY
    assert (caught.value.code, caught.value.message) == (status, f"{code}: {message}")
    assert [node.id for node in driver.list_nodes()] == [small.id, after.id]
    assert instance(cloud, after.id)["InstanceType"] == "m5.large"
    assert cloud.count("RunInstances", InstanceType="m5.large") == 2


@pytest.mark.parametrize(
    ("sent", "renumbered"),
    [
        (
            {"ResourceId.0": "i-1", "Tag.0.Key": "a", "Tag.1.Key": "b"},
            {"ResourceId.1": "i-1", "Tag.1.Key": "a", "Tag.2.Key": "b"},
        ),
        (
            {"InstanceId.1": "i-1", "Filter.1.Value.1": "x"},
            {"InstanceId.1": "i-1", "Filter.1.Value.1": "x"},
        ),
        (
            {"IpPermissions.1.IpRanges.0.CidrIp": "a", "IpPermissions.1.IpRanges.1.CidrIp": "b"},
            {"IpPermissions.1.IpRanges.1.CidrIp": "a", "IpPermissions.1.IpRanges.2.CidrIp": "b"},
        ),
    ],
)
def test_one_based(sent, renumbered):
    assert _one_based({"Action": "X", **sent}) == {"Action": "X", **renumbered}
