"""The VM lifecycle on EC2, served by moto on loopback, with the requests that reach it counted."""

import pytest
from conftest import NODE_KEYS, ec2_cloud, token_client

SIZE = "t2.micro"


@pytest.fixture
def client(make_app, cloud):
    """A client with role agent, of an app whose cloud `aws` is the moto server."""
    farm = {"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()}
    return token_client(make_app(CLOUD_FARM=farm))


def start(client, cloud, **extra):
    body = {"name": "web-1", "image": cloud.default_image_id(), "size": SIZE, **extra}
    return client.post("/api/v1/vm/start/aws", json=body)


def test_start_list_details_reboot_power_and_stop(client, cloud):
    """A VM's whole life through the API, each step checked against moto with boto3."""
    ec2 = cloud.boto3_client()
    started = start(client, cloud)
    assert started.status_code == 200, started.json
    node = started.json["nodes"]
    assert set(node) == NODE_KEYS
    assert node["name"] == "web-1"
    assert (node["provider"], node["cloud_type"]) == ("ec2", "Amazon EC2")
    node_id = node["id"]
    described = ec2.describe_instances(InstanceIds=[node_id])["Reservations"][0]["Instances"][0]
    assert described["InstanceType"] == SIZE
    assert {"Key": "Name", "Value": "web-1"} in described["Tags"]

    listed = client.get("/api/v1/nodes/aws").json["nodes"]
    assert [(n["id"], n["name"]) for n in listed] == [(node_id, "web-1")]
    details = client.get(f"/api/v1/nodes/aws/{node_id}").json
    assert details["node"]["id"] == node_id
    assert details["node"]["state"] == "running"

    rebooted = client.put("/api/v1/vm/action/reboot/aws", json={"node": node_id})
    assert rebooted.json == {"status": "ok", "result": f"Node {node_id} rebooted"}
    powered_off = client.put("/api/v1/vm/action/poweroff/aws", json={"node": node_id})
    assert powered_off.json["result"] == f"Node {node_id} powered off"
    assert state_of(ec2, node_id) == "stopped"
    powered_on = client.put("/api/v1/vm/action/poweron/aws", json={"node": node_id})
    assert powered_on.json["result"] == f"Node {node_id} powered on"
    assert state_of(ec2, node_id) == "running"

    stopped = client.put("/api/v1/vm/stop/aws", json={"node": node_id})
    assert stopped.json == {"status": "ok", "result": f"Node {node_id} deleted"}
    assert state_of(ec2, node_id) == "terminated"


def state_of(ec2, node_id):
    reservation = ec2.describe_instances(InstanceIds=[node_id])["Reservations"][0]
    return reservation["Instances"][0]["State"]["Name"]


def test_start_among_1301_public_images_makes_two_requests(client, cloud):
    """No unfiltered DescribeImages: one image lookup by id and one RunInstances."""
    all_images = cloud.driver().list_images()
    assert len(all_images) >= 1301
    cloud.clear()
    assert start(client, cloud).status_code == 200
    assert cloud.actions() == ["DescribeImages", "RunInstances"]
    lookup = cloud.requests("DescribeImages")[0]
    assert lookup["ImageId.1"] == cloud.default_image_id()
    assert not any(key.startswith(("Owner", "Filter", "ExecutableBy")) for key in lookup)


def test_second_start_takes_the_image_from_the_cache(client, cloud):
    """The image looked up for the first start serves the second: one request then."""
    assert start(client, cloud).status_code == 200
    cloud.clear()
    assert start(client, cloud, name="web-2").status_code == 200
    assert cloud.actions() == ["RunInstances"]


def test_stop_by_id_makes_three_requests(client, cloud):
    """Stopping by id: the instance by its id (with its addresses), then TerminateInstances."""
    node_id = start(client, cloud).json["nodes"]["id"]
    cloud.clear()
    assert client.put("/api/v1/vm/stop/aws", json={"node": node_id}).status_code == 200
    assert cloud.actions() == ["DescribeInstances", "DescribeAddresses", "TerminateInstances"]
    assert cloud.requests("DescribeInstances")[0]["InstanceId.1"] == node_id


def test_stop_by_hostname_filters_on_the_name_tag(client, cloud):
    """Stopping by hostname asks EC2 for that Name tag only, then terminates."""
    node_id = start(client, cloud).json["nodes"]["id"]
    start(client, cloud, name="web-2")
    cloud.clear()
    response = client.put("/api/v1/vm/stop/aws", json={"hostname": "web-1"})
    assert response.json == {"status": "ok", "result": f"Node {node_id} deleted"}
    assert cloud.actions() == ["DescribeInstances", "DescribeAddresses", "TerminateInstances"]
    lookup = cloud.requests("DescribeInstances")[0]
    assert (lookup["Filter.1.Name"], lookup["Filter.1.Value.1"]) == ("tag:Name", "web-1")


def test_keyname_and_metadata_reach_ec2(client, cloud):
    """keyname becomes the instance's key pair, metadata its tags."""
    ec2 = cloud.boto3_client()
    ec2.create_key_pair(KeyName="deploy-key")
    response = start(client, cloud, keyname="deploy-key", metadata={"team": "genomics"})
    assert response.status_code == 200, response.json
    node_id = response.json["nodes"]["id"]
    instance = ec2.describe_instances(InstanceIds=[node_id])["Reservations"][0]["Instances"][0]
    assert instance["KeyName"] == "deploy-key"
    assert {"Key": "team", "Value": "genomics"} in instance["Tags"]


def test_unknown_image_is_400_naming_it(client, cloud):
    """An image id EC2 does not know: 400 naming it, and no instance is run."""
    response = client.post(
        "/api/v1/vm/start/aws", json={"name": "x", "image": "ami-00000000", "size": SIZE}
    )
    assert response.status_code == 400
    assert response.json["message"] == "no useful image id here: ami-00000000"
    assert cloud.actions() == ["DescribeImages"]


def test_unknown_size_is_400_without_a_request(client, cloud):
    """EC2's sizes are known to the driver: an unknown one costs no request at all."""
    response = start(client, cloud, size="t9.gigantic")
    assert response.status_code == 400
    assert response.json["message"] == "no useful size id here: t9.gigantic"
    assert "RunInstances" not in cloud.actions()


@pytest.mark.parametrize("node_id", ["i-0123456789abcdef0", "not-an-instance-id"])
def test_unknown_node_is_404(client, cloud, node_id):
    """A node EC2 does not have (or an id it cannot parse) is a 404 for stop and details."""
    response = client.put("/api/v1/vm/stop/aws", json={"node": node_id})
    assert response.status_code == 404
    assert response.json["message"] == f"no useful node id here: {node_id}"
    assert client.get(f"/api/v1/nodes/aws/{node_id}").status_code == 404
    assert "TerminateInstances" not in cloud.actions()


def test_provider_error_is_502_with_its_message(client, cloud):
    """EC2 refusing RunInstances (more tags than it allows) is a 502 carrying EC2's words."""
    metadata = {f"tag-{number}": "x" for number in range(60)}
    response = start(client, cloud, metadata=metadata)
    assert response.status_code == 502
    assert response.json["message"] == (
        "aws: TagLimitExceeded: The maximum number of Tags for a resource has been reached."
    )
    assert cloud.count("RunInstances") == 1


def test_hanging_cloud_times_out_with_504(make_app, hanging_port):
    """An EC2 endpoint that never answers gives 504 on start and stop."""
    entry = {**ec2_cloud(hanging_port), "ENGINE": "ec2"}
    client = token_client(make_app(CLOUD_FARM={"default": entry}, CLOUD_TIMEOUT=1))
    response = client.post("/api/v1/vm/start", json={"name": "x", "image": "ami-1", "size": SIZE})
    assert response.status_code == 504
    assert client.put("/api/v1/vm/stop", json={"node": "i-1"}).status_code == 504


def test_a_hostname_two_vms_share_is_409_naming_both(client, cloud):
    """Two live VMs called alike: stopping by that name is refused, naming both ids."""
    first = start(client, cloud).json["nodes"]["id"]
    second = start(client, cloud).json["nodes"]["id"]
    response = client.put("/api/v1/vm/stop/aws", json={"hostname": "web-1"})
    assert response.status_code == 409
    message = response.json["message"]
    assert message.endswith("are all called web-1: give the node id")
    assert first in message and second in message
    assert "TerminateInstances" not in cloud.actions()
