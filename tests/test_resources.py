"""Firewall, storage, locations and key pairs on the Dummy driver: 501s and request validation."""

import pytest

DUMMY = "Dummy Node Provider"
RULE = {"group": "web", "from_port": 22}
ATTACHMENT = {"volume": "vol-1", "node": "1", "device": "/dev/sdf"}

# (method, path on fake_driver, body, what the Dummy driver lacks)
UNSUPPORTED = [
    ("get", "/fw", None, "security groups"),
    ("post", "/fw", {"name": "web"}, "security groups"),
    ("put", "/fw/open", RULE, "security groups"),
    ("post", "/fw/open", RULE, "security groups"),
    ("put", "/fw/close", RULE, "security groups"),
    ("post", "/fw/close", RULE, "security groups"),
    ("get", "/volumes", None, "volumes"),
    ("post", "/storage/create", {"name": "data", "size": 1}, "volumes"),
    ("put", "/storage/attach", ATTACHMENT, "volumes"),
    ("put", "/storage/detach", {"volume": "vol-1"}, "volumes"),
    ("put", "/storage/destroy", {"volume": "vol-1"}, "volumes"),
    ("get", "/keypairs", None, "list_key_pairs"),
]


@pytest.mark.parametrize(("method", "path", "body", "feature"), UNSUPPORTED)
def test_dummy_driver_answers_501_naming_driver_and_feature(client, method, path, body, feature):
    """Every firewall, storage and key pair endpoint on the Dummy driver is a 501, not a 500."""
    response = getattr(client, method)(f"/api/v1{path}/fake_driver", json=body)
    assert response.status_code == 501, response.json
    assert response.json["status"] == "error"
    assert response.json["status_code"] == 501
    assert response.json["message"] == f"fake_driver: the {DUMMY} driver has no {feature}"


def test_default_cloud_is_the_dummy_too(client):
    """Without a cloud in the path the default (Dummy) cloud answers, with the same 501."""
    response = client.get("/api/v1/fw")
    assert response.status_code == 501
    assert response.json["message"] == f"default: the {DUMMY} driver has no security groups"


def test_dummy_driver_lists_its_locations(client):
    """Locations are the one listing of these the Dummy driver has."""
    response = client.get("/api/v1/locations/fake_driver")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert [(loc["id"], loc["name"], loc["country"]) for loc in response.json["locations"]] == [
        ("1", "Paul's Room", "US"),
        ("2", "London Loft", "GB"),
        ("3", "Island Datacenter", "FJ"),
    ]


def test_start_with_security_groups_on_dummy_is_400(client):
    """The Dummy driver's create_node takes no security groups: 400 naming the field."""
    body = {"name": "x", "image": "1", "size": "1", "security_groups": ["web"]}
    response = client.post("/api/v1/vm/start/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"] == f"security_groups: the {DUMMY} driver does not take it"
    assert "x" not in [
        node["name"] for node in client.get("/api/v1/nodes/fake_driver").json["nodes"]
    ]


PORT_MESSAGE = "{}: a whole number from 0 to 65535"
CIDR_MESSAGE = "cidr: an IPv4 or IPv6 network, like 10.0.0.0/8"
BAD_RULES = [
    ({"from_port": -1}, PORT_MESSAGE.format("from_port")),
    ({"from_port": 65536}, PORT_MESSAGE.format("from_port")),
    ({"from_port": True}, PORT_MESSAGE.format("from_port")),
    ({"from_port": "22"}, PORT_MESSAGE.format("from_port")),
    ({"from_port": 22.5}, PORT_MESSAGE.format("from_port")),
    ({"to_port": 65536}, PORT_MESSAGE.format("to_port")),
    ({"to_port": False}, PORT_MESSAGE.format("to_port")),
    ({"from_port": 80, "to_port": 79}, "to_port: not below from_port"),
    ({"cidr": "10.0.0.0/33"}, CIDR_MESSAGE),
    ({"cidr": "not-a-network"}, CIDR_MESSAGE),
    ({"cidr": "::/129"}, CIDR_MESSAGE),
    ({"cidr": 10}, CIDR_MESSAGE),
    ({"protocol": "sctp"}, "protocol: tcp, udp or icmp"),
    ({"protocol": 6}, "protocol: tcp, udp or icmp"),
    ({"group": ""}, "group: non-empty string"),
    ({"group": 7}, "group: non-empty string"),
]


@pytest.mark.parametrize(("change", "message"), BAD_RULES)
def test_bad_port_rule_is_400_naming_the_field(client, change, message):
    """A rule outside the schema is refused before any cloud call (else the Dummy says 501)."""
    for action in ("open", "close"):
        response = client.put(f"/api/v1/fw/{action}/fake_driver", json={**RULE, **change})
        assert response.status_code == 400, response.json
        assert response.json["message"] == message


@pytest.mark.parametrize("field", ["group", "from_port"])
def test_port_rule_missing_field_is_400_naming_it(client, field):
    """A rule without its group or from_port: 400 naming the missing field."""
    body = {key: value for key, value in RULE.items() if key != field}
    response = client.put("/api/v1/fw/open/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"] == f"missing field: '{field}'"


def test_port_rule_that_is_no_object_is_400(client):
    """A JSON list, or no body at all, is not a rule."""
    assert client.put("/api/v1/fw/open/fake_driver", json=[RULE]).status_code == 400
    response = client.put("/api/v1/fw/open/fake_driver")
    assert response.status_code == 400
    assert response.json["message"].startswith("Malformed JSON stream")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "missing field: 'name'"),
        ({"name": ""}, "name: non-empty string"),
        ({"name": "web", "description": 5}, "description: string"),
    ],
)
def test_bad_security_group_is_400_naming_the_field(client, body, message):
    """A group without a name, or with a description that is no string, is refused."""
    response = client.post("/api/v1/fw/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"] == message


SIZE_MESSAGE = "size: a whole number of GB from 1 to 65536"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "data", "size": 0}, SIZE_MESSAGE),
        ({"name": "data", "size": -1}, SIZE_MESSAGE),
        ({"name": "data", "size": "1"}, SIZE_MESSAGE),
        ({"name": "data", "size": True}, SIZE_MESSAGE),
        ({"name": "data", "size": 1.5}, SIZE_MESSAGE),
        ({"name": "data", "size": 65537}, SIZE_MESSAGE),
        ({"name": "data", "size": 10**400}, SIZE_MESSAGE),
        ({"name": "data"}, "missing field: 'size'"),
        ({"size": 1}, "missing field: 'name'"),
        ({"name": "", "size": 1}, "name: non-empty string"),
        ({"name": "data", "size": 1, "location": ""}, "location: non-empty string"),
    ],
)
def test_bad_volume_is_400_naming_the_field(client, body, message):
    """A volume of no whole positive size, or without a name, is refused before the cloud."""
    response = client.post("/api/v1/storage/create/fake_driver", json=body)
    assert response.status_code == 400, response.json
    assert response.json["message"] == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"node": "1"}, "missing field: 'volume'"),
        ({"volume": "vol-1"}, "no valid node id nor hostname here"),
        (
            {"volume": "vol-1", "node": "1", "hostname": "x"},
            "node, hostname: give one of them, not both",
        ),
        ({"volume": "vol-1", "node": "1", "device": ""}, "device: non-empty string"),
        ({"volume": "", "node": "1"}, "volume: non-empty string"),
    ],
)
def test_bad_attachment_is_400_naming_the_field(client, body, message):
    """An attachment without a volume, or without exactly one of node and hostname, is refused."""
    response = client.put("/api/v1/storage/attach/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"] == message


@pytest.mark.parametrize(
    ("body", "message"),
    [({}, "missing field: 'volume'"), ({"volume": 3}, "volume: non-empty string")],
)
def test_bad_volume_reference_is_400(client, body, message):
    """Detach and destroy need a volume id."""
    for action in ("detach", "destroy"):
        response = client.put(f"/api/v1/storage/{action}/fake_driver", json=body)
        assert response.status_code == 400
        assert response.json["message"] == message


@pytest.mark.parametrize("groups", [[], "web", [""], [3]])
def test_bad_security_groups_on_start_is_400(client, groups):
    """security_groups is a non-empty list of names."""
    body = {"name": "x", "image": "1", "size": "1", "security_groups": groups}
    response = client.post("/api/v1/vm/start/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"].startswith("security_groups: ")


def test_icmp_rules_name_type_and_code(client):
    """With icmp the ports are the ICMP type and code: the code is needed, not a range."""
    body = {"group": "web", "protocol": "icmp", "from_port": 8}
    response = client.put("/api/v1/fw/open/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"] == "to_port: the ICMP code, needed with icmp"
    echo_request = client.put("/api/v1/fw/open/fake_driver", json={**body, "to_port": 0})
    assert echo_request.status_code == 501  # valid: only the Dummy driver lacks groups


def test_deleting_a_group_on_dummy_is_501_and_needs_a_group(client):
    """The Dummy driver has no security groups; a body without a group is a 400 first."""
    response = client.delete("/api/v1/fw/fake_driver", json={"group": "web"})
    assert response.status_code == 501
    assert "security groups" in response.json["message"]
    missing = client.delete("/api/v1/fw/fake_driver", json={})
    assert (missing.status_code, missing.json["message"]) == (400, "missing field: 'group'")
