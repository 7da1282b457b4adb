"""Security groups, volumes, locations and key pairs on EC2 (moto on loopback), seen by boto3."""

import pytest
from botocore.exceptions import ClientError
from conftest import token_client

SIZE = "t2.micro"


@pytest.fixture
def app(make_app, cloud):
    """An app whose cloud `aws` is the moto server."""
    return make_app(CLOUD_FARM={"default": {"ENGINE": "dummy"}, "aws": cloud.farm_entry()})


@pytest.fixture
def client(app):
    """A client with role agent."""
    return token_client(app)


def create_group(client, name="web", description="web servers"):
    response = client.post("/api/v1/fw/aws", json={"name": name, "description": description})
    assert response.status_code == 200, response.json
    return response.json["group"]


def change(client, action, **rule):
    return client.put(f"/api/v1/fw/{action}/aws", json=rule)


def ingress(cloud, group_id):
    """The group's ingress rules as boto3 sees them: (protocol, from, to, IPv4 and IPv6 cidrs)."""
    group = cloud.boto3_client().describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    return [
        (
            permission["IpProtocol"],
            permission.get("FromPort"),
            permission.get("ToPort"),
            [r["CidrIp"] for r in permission["IpRanges"]]
            + [r["CidrIpv6"] for r in permission["Ipv6Ranges"]],
        )
        for permission in group["IpPermissions"]
    ]


def start(client, cloud, **extra):
    body = {"name": "web-1", "image": cloud.default_image_id(), "size": SIZE, **extra}
    response = client.post("/api/v1/vm/start/aws", json=body)
    assert response.status_code == 200, response.json
    return response.json["nodes"]["id"]


def create_volume(client, name="d", size=1):
    response = client.post("/api/v1/storage/create/aws", json={"name": name, "size": size})
    assert response.status_code == 200, response.json
    return response.json["volume"]["id"]


def instance(cloud, node_id):
    reservation = cloud.boto3_client().describe_instances(InstanceIds=[node_id])["Reservations"]
    return reservation[0]["Instances"][0]


def test_create_group_is_seen_by_boto3_and_listed(client, cloud):
    """A group made through the API exists in EC2 and in the listing; its name again is 409."""
    group = create_group(client)
    assert group["id"].startswith("sg-")
    assert {k: v for k, v in group.items() if k != "id"} == {
        "name": "web",
        "description": "web servers",
        "rules": [],
    }
    assert cloud.actions() == [
        "DescribeSecurityGroups",
        "CreateSecurityGroup",
        "DescribeSecurityGroups",
    ]
    described = cloud.boto3_client().describe_security_groups(GroupIds=[group["id"]])
    assert described["SecurityGroups"][0]["GroupName"] == "web"
    assert described["SecurityGroups"][0]["Description"] == "web servers"

    listed = client.get("/api/v1/fw/aws")
    assert listed.status_code == 200
    assert listed.json["status"] == "ok"
    assert group in listed.json["groups"]
    assert {g["name"] for g in listed.json["groups"]} == {"default", "web"}

    cloud.clear()
    again = client.post("/api/v1/fw/aws", json={"name": "web"})
    assert again.status_code == 409
    assert again.json["message"] == "a security group called web exists already"
    assert cloud.actions() == ["DescribeSecurityGroups"]


def test_open_reopen_close_and_close_again(client, cloud):
    """tcp 22 from 10.0.0.0/8: opened (boto3 sees it), already open, closed, then 404."""
    group = create_group(client)
    rule = {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"}
    cloud.clear()

    opened = change(client, "open", group="web", from_port=22, cidr="10.0.0.0/8")
    assert opened.status_code == 200, opened.json
    assert opened.json == {"status": "ok", "group": {**group, "rules": [rule]}, "result": "opened"}
    assert ingress(cloud, group["id"]) == [("tcp", 22, 22, ["10.0.0.0/8"])]
    assert cloud.actions() == [
        "DescribeSecurityGroups",
        "AuthorizeSecurityGroupIngress",
        "DescribeSecurityGroups",
    ]
    sent = cloud.requests("AuthorizeSecurityGroupIngress")[0]
    assert sent["GroupId"] == group["id"]
    assert sent["IpPermissions.1.IpRanges.1.CidrIp"] == "10.0.0.0/8"

    cloud.clear()
    # by id this time, the protocol in capitals and the to_port spelled out: the same rule
    reopened = change(client, "open", group=group["id"], **{**rule, "protocol": "TCP"})
    assert reopened.status_code == 200
    assert reopened.json["result"] == "already open"
    assert reopened.json["group"]["rules"] == [rule]
    assert cloud.actions() == ["DescribeSecurityGroups"]
    assert ingress(cloud, group["id"]) == [("tcp", 22, 22, ["10.0.0.0/8"])]

    cloud.clear()
    closed = client.post("/api/v1/fw/close/aws", json={"group": group["id"], **rule})
    assert closed.status_code == 200, closed.json
    assert closed.json == {"status": "ok", "group": group, "result": "closed"}
    assert ingress(cloud, group["id"]) == []
    assert cloud.actions() == [
        "DescribeSecurityGroups",
        "RevokeSecurityGroupIngress",
        "DescribeSecurityGroups",
    ]

    cloud.clear()
    again = change(client, "close", group="web", from_port=22, cidr="10.0.0.0/8")
    assert again.status_code == 404
    assert again.json["message"] == "group web has no rule tcp 22-22 from 10.0.0.0/8"
    assert cloud.actions() == ["DescribeSecurityGroups"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"protocol": "udp", "from_port": 53}, ("udp", 53, 53, "0.0.0.0/0")),
        ({"protocol": "icmp", "from_port": 8, "to_port": 0}, ("icmp", 8, 0, "0.0.0.0/0")),
        ({"from_port": 8000, "to_port": 8080}, ("tcp", 8000, 8080, "0.0.0.0/0")),
        ({"from_port": 443, "cidr": "172.16.5.4/12"}, ("tcp", 443, 443, "172.16.0.0/12")),
    ],
)
def test_open_and_close_other_rules(client, cloud, rule, expected):
    """udp, icmp, a port range and a host-bit cidr (normalised): each opened and closed in EC2."""
    group = create_group(client)
    protocol, from_port, to_port, cidr = expected
    opened = change(client, "open", group="web", **rule)
    assert opened.status_code == 200, opened.json
    assert opened.json["result"] == "opened"
    assert opened.json["group"]["rules"] == [
        {"protocol": protocol, "from_port": from_port, "to_port": to_port, "cidr": cidr}
    ]
    assert ingress(cloud, group["id"]) == [(protocol, from_port, to_port, [cidr])]
    assert change(client, "open", group="web", **rule).json["result"] == "already open"
    assert cloud.count("AuthorizeSecurityGroupIngress") == 1

    closed = change(client, "close", group="web", **rule)
    assert closed.status_code == 200, closed.json
    assert closed.json["group"]["rules"] == []
    assert ingress(cloud, group["id"]) == []


def test_two_networks_on_one_port_are_two_rules(client, cloud):
    """EC2 merges two cidrs of one port into one permission; each lists and closes alone."""
    group = create_group(client)
    assert change(client, "open", group="web", from_port=22, cidr="10.0.0.0/8").status_code == 200
    opened = change(client, "open", group="web", from_port=22, cidr="192.168.0.0/16")
    assert opened.json["result"] == "opened"
    assert [rule["cidr"] for rule in opened.json["group"]["rules"]] == [
        "10.0.0.0/8",
        "192.168.0.0/16",
    ]
    assert ingress(cloud, group["id"]) == [("tcp", 22, 22, ["10.0.0.0/8", "192.168.0.0/16"])]

    cloud.clear()
    closed = change(client, "close", group="web", from_port=22, cidr="10.0.0.0/8")
    assert [rule["cidr"] for rule in closed.json["group"]["rules"]] == ["192.168.0.0/16"]
    assert ingress(cloud, group["id"]) == [("tcp", 22, 22, ["192.168.0.0/16"])]
    assert cloud.count("RevokeSecurityGroupIngress") == 1
    revoked = cloud.requests("RevokeSecurityGroupIngress")[0]
    assert revoked["IpPermissions.1.IpRanges.1.CidrIp"] == "10.0.0.0/8"
    assert "IpPermissions.1.IpRanges.2.CidrIp" not in revoked


def test_ipv6_cidr_is_refused_before_ec2_is_asked(client, cloud):
    """libcloud can send EC2 IPv4 ranges only: ::/0 is a 400 naming cidr, nothing is sent."""
    group = create_group(client)
    cloud.clear()
    for action in ("open", "close"):
        response = change(client, action, group="web", from_port=443, cidr="::/0")
        assert response.status_code == 400
        assert response.json["message"] == "cidr: the Amazon EC2 driver takes IPv4 networks only"
    assert cloud.actions() == []
    assert ingress(cloud, group["id"]) == []


def test_ipv6_rule_made_elsewhere_lists_without_its_cidr(client, cloud):
    """libcloud reads ipRanges only: an IPv6 rule made with boto3 lists with cidr null."""
    group = create_group(client)
    cloud.boto3_client().authorize_security_group_ingress(
        GroupId=group["id"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            }
        ],
    )
    assert ingress(cloud, group["id"]) == [("tcp", 443, 443, ["::/0"])]
    listed = {g["name"]: g for g in client.get("/api/v1/fw/aws").json["groups"]}
    assert listed["web"]["rules"] == [
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": None}
    ]
    closing = change(client, "close", group="web", from_port=443, cidr="::/0")
    assert closing.status_code == 400
    assert "RevokeSecurityGroupIngress" not in cloud.actions()


def test_delete_group_by_name_or_id(client, cloud):
    """DELETE /fw: the group is gone from EC2 (boto3 says so); deleting it again is a 404."""
    web = create_group(client)
    create_group(client, name="db")
    cloud.clear()
    response = client.delete("/api/v1/fw/aws", json={"group": "web"})
    assert response.json == {"status": "ok", "result": f"Group {web['id']} deleted"}
    assert cloud.actions() == ["DescribeSecurityGroups", "DeleteSecurityGroup"]
    names = {
        g["GroupName"] for g in cloud.boto3_client().describe_security_groups()["SecurityGroups"]
    }
    assert "web" not in names and "db" in names
    db_group = next(g for g in client.get("/api/v1/fw/aws").json["groups"] if g["name"] == "db")
    assert client.delete("/api/v1/fw/aws", json={"group": db_group["id"]}).status_code == 200
    again = client.delete("/api/v1/fw/aws", json={"group": "web"})
    assert again.status_code == 404
    assert again.json["message"] == "no security group web"


def test_unknown_group_is_404(client, cloud):
    """Opening or closing on a group EC2 does not have: 404 naming it, nothing changed."""
    for action in ("open", "close"):
        response = change(client, action, group="nope", from_port=22)
        assert response.status_code == 404
        assert response.json["message"] == "no security group nope"
    assert cloud.actions() == ["DescribeSecurityGroups", "DescribeSecurityGroups"]


def test_volume_create_attach_detach_destroy(client, cloud):
    """A 1 GB volume through its whole life, each state confirmed with boto3."""
    ec2 = cloud.boto3_client()
    node_id = start(client, cloud)
    cloud.clear()

    created = client.post("/api/v1/storage/create/aws", json={"name": "data", "size": 1})
    assert created.status_code == 200, created.json
    volume = created.json["volume"]
    assert (volume["name"], volume["size"]) == ("data", 1)
    assert (volume["provider"], volume["cloud_type"]) == ("ec2", "Amazon EC2")
    volume_id = volume["id"]
    # without a location libcloud picks the first zone; the Name tag is a request of its own
    assert cloud.actions() == ["DescribeAvailabilityZones", "CreateVolume", "CreateTags"]
    described = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert (described["Size"], described["State"], described["Attachments"]) == (1, "available", [])
    assert {"Key": "Name", "Value": "data"} in described["Tags"]
    listed = client.get("/api/v1/volumes/aws").json["volumes"]  # with the VM's root volume
    assert (volume_id, "data", 1, "available") in [
        (v["id"], v["name"], v["size"], v["state"]) for v in listed
    ]

    cloud.clear()
    body = {"volume": volume_id, "node": node_id, "device": "/dev/sdf"}
    attached = client.put("/api/v1/storage/attach/aws", json=body)
    assert attached.status_code == 200, attached.json
    assert attached.json == {
        "status": "ok",
        "result": f"Volume {volume_id} attached to node {node_id}",
    }
    assert cloud.actions() == [
        "DescribeVolumes",
        "DescribeInstances",
        "DescribeAddresses",
        "AttachVolume",
    ]
    assert cloud.requests("AttachVolume")[0]["Device"] == "/dev/sdf"
    described = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert described["State"] == "in-use"
    assert [(a["InstanceId"], a["Device"]) for a in described["Attachments"]] == [
        (node_id, "/dev/sdf")
    ]

    cloud.clear()
    detached = client.put("/api/v1/storage/detach/aws", json={"volume": volume_id})
    assert detached.status_code == 200, detached.json
    assert detached.json == {"status": "ok", "result": f"Volume {volume_id} detached"}
    assert cloud.actions() == ["DescribeVolumes", "DetachVolume"]
    described = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert (described["State"], described["Attachments"]) == ("available", [])

    cloud.clear()
    destroyed = client.put("/api/v1/storage/destroy/aws", json={"volume": volume_id})
    assert destroyed.status_code == 200, destroyed.json
    assert destroyed.json == {"status": "ok", "result": f"Volume {volume_id} destroyed"}
    assert cloud.actions() == ["DescribeVolumes", "DeleteVolume"]
    with pytest.raises(ClientError, match="InvalidVolume.NotFound"):
        ec2.describe_volumes(VolumeIds=[volume_id])
    assert volume_id not in [v["id"] for v in client.get("/api/v1/volumes/aws").json["volumes"]]


def test_attach_by_hostname(client, cloud):
    """The node of an attachment may be named by its hostname."""
    node_id = start(client, cloud, name="db-1")
    volume_id = create_volume(client, size=2)
    body = {"volume": volume_id, "hostname": "db-1", "device": "/dev/sdg"}
    attached = client.put("/api/v1/storage/attach/aws", json=body)
    assert attached.json["result"] == f"Volume {volume_id} attached to node {node_id}"
    volume = cloud.boto3_client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Size"] == 2
    assert volume["Attachments"][0]["InstanceId"] == node_id


def test_create_volume_in_a_location(client, cloud):
    """A zone by name or by id places the volume there; the zones are listed once, then cached."""
    ec2 = cloud.boto3_client()
    body = {"name": "data", "size": 1, "location": "us-east-1b"}
    created = client.post("/api/v1/storage/create/aws", json=body)
    assert created.status_code == 200, created.json
    assert cloud.actions() == ["DescribeAvailabilityZones", "CreateVolume", "CreateTags"]
    volume = ec2.describe_volumes(VolumeIds=[created.json["volume"]["id"]])["Volumes"][0]
    assert volume["AvailabilityZone"] == "us-east-1b"

    cloud.clear()
    by_id = client.post("/api/v1/storage/create/aws", json={**body, "location": "2"})
    assert by_id.status_code == 200, by_id.json
    assert cloud.actions() == ["CreateVolume", "CreateTags"]
    volume = ec2.describe_volumes(VolumeIds=[by_id.json["volume"]["id"]])["Volumes"][0]
    assert volume["AvailabilityZone"] == "us-east-1c"

    cloud.clear()
    unknown = client.post("/api/v1/storage/create/aws", json={**body, "location": "mars-1a"})
    assert unknown.status_code == 400
    assert unknown.json["message"] == "location: no location mars-1a in this cloud"
    assert cloud.actions() == []


@pytest.mark.parametrize(
    ("action", "extra"),
    [
        ("attach", {"node": "i-0123456789abcdef0", "device": "/dev/sdf"}),
        ("detach", {}),
        ("destroy", {}),
    ],
)
def test_unknown_volume_is_404(client, cloud, action, extra):
    """A volume EC2 does not have: 404 naming it, after one DescribeVolumes."""
    response = client.put(
        f"/api/v1/storage/{action}/aws", json={"volume": "vol-0123456789abcdef0", **extra}
    )
    assert response.status_code == 404
    assert response.json["message"] == "no volume vol-0123456789abcdef0"
    assert cloud.actions() == ["DescribeVolumes"]


def test_attach_to_an_unknown_node_is_404(client, cloud):
    """A node EC2 does not have: 404 naming it, and no AttachVolume."""
    volume_id = create_volume(client)
    cloud.clear()
    body = {"volume": volume_id, "node": "i-0123456789abcdef0", "device": "/dev/sdf"}
    response = client.put("/api/v1/storage/attach/aws", json=body)
    assert response.status_code == 404
    assert response.json["message"] == "no useful node id here: i-0123456789abcdef0"
    assert cloud.actions() == ["DescribeVolumes", "DescribeInstances"]


def test_attach_without_device_is_400(client, cloud):
    """EC2's attach_volume needs a device: 400 naming it, and no AttachVolume."""
    node_id = start(client, cloud)
    volume_id = create_volume(client)
    response = client.put("/api/v1/storage/attach/aws", json={"volume": volume_id, "node": node_id})
    assert response.status_code == 400
    assert response.json["message"] == "device: the Amazon EC2 driver needs one"
    assert "AttachVolume" not in cloud.actions()
    volume = cloud.boto3_client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Attachments"] == []


def test_start_in_a_security_group(client, cloud):
    """vm/start with security_groups ["web"]: the instance is in that group per boto3."""
    group = create_group(client)
    cloud.clear()
    node_id = start(client, cloud, security_groups=["web"])
    assert cloud.requests("RunInstances")[0]["SecurityGroup.1"] == "web"
    groups = instance(cloud, node_id)["SecurityGroups"]
    assert [(g["GroupId"], g["GroupName"]) for g in groups] == [(group["id"], "web")]


def test_key_pairs_by_name_and_fingerprint_only(client, cloud):
    """A key pair made with boto3 is listed by name and fingerprint, never its key material."""
    made = cloud.boto3_client().create_key_pair(KeyName="deploy-key")
    response = client.get("/api/v1/keypairs/aws")
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "keypairs": [{"name": "deploy-key", "fingerprint": made["KeyFingerprint"]}],
    }
    assert "private_key" not in response.text and "public_key" not in response.text
    assert "PRIVATE KEY" not in response.text
    assert cloud.actions() == ["DescribeKeyPairs"]


def test_locations_are_the_region_zones(client, cloud):
    """Locations are us-east-1's availability zones, as boto3 lists them."""
    zones = cloud.boto3_client().describe_availability_zones()["AvailabilityZones"]
    response = client.get("/api/v1/locations/aws")
    assert response.status_code == 200
    names = [location["name"] for location in response.json["locations"]]
    assert names == [zone["ZoneName"] for zone in zones]
    assert names and all(name.startswith("us-east-1") for name in names)
    assert cloud.actions() == ["DescribeAvailabilityZones"]


def test_user_without_role_reads_but_cannot_change(app, client, cloud):
    """No agent/admin role: 403 on every change, none reaching EC2; 200 on the group listing."""
    group = create_group(client)
    reader = token_client(app, username="reader", roles=())
    cloud.clear()
    listed = reader.get("/api/v1/fw/aws")
    assert listed.status_code == 200
    assert {g["name"] for g in listed.json["groups"]} == {"default", "web"}
    assert cloud.actions() == ["DescribeSecurityGroups"]

    cloud.clear()
    rule = {"group": group["id"], "from_port": 22}
    refused = [
        reader.post("/api/v1/fw/aws", json={"name": "db"}),
        reader.put("/api/v1/fw/open/aws", json=rule),
        reader.post("/api/v1/fw/open/aws", json=rule),
        reader.put("/api/v1/fw/close/aws", json=rule),
        reader.post("/api/v1/storage/create/aws", json={"name": "d", "size": 1}),
        reader.put("/api/v1/storage/attach/aws", json={"volume": "v", "node": "i", "device": "d"}),
        reader.put("/api/v1/storage/detach/aws", json={"volume": "v"}),
        reader.put("/api/v1/storage/destroy/aws", json={"volume": "v"}),
    ]
    assert [response.status_code for response in refused] == [403] * len(refused)
    assert {response.json["message"] for response in refused} == {
        "Forbidden: this needs the role agent or admin"
    }
    assert cloud.actions() == []

    admin = token_client(app, username="boss", roles=("admin",))
    assert admin.put("/api/v1/fw/open/aws", json=rule).json["result"] == "opened"
