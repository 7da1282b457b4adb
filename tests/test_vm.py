"""Starting, stopping, rebooting and powering VMs on libcloud's Dummy driver."""

import pytest
from conftest import NODE_KEYS, token_client

from dispatcher import clouds

START = {"name": "web-1", "image": "1", "size": "2"}


def node_names(client, cloud="fake_driver"):
    return [node["name"] for node in client.get(f"/api/v1/nodes/{cloud}").json["nodes"]]


def test_start_lists_details_reboots_and_stops(client):
    """The whole life of a VM through the API: start, list, details, reboot, stop."""
    started = client.post("/api/v1/vm/start/fake_driver", json=START)
    assert started.status_code == 200
    node = started.json["nodes"]
    assert started.json["status"] == "ok"
    assert set(node) == NODE_KEYS
    assert (node["id"], node["name"], node["state"]) == ("3", "dummy-3", "running")
    assert node_names(client) == ["dummy-1", "dummy-2", "dummy-3"]

    details = client.get("/api/v1/nodes/fake_driver/3")
    assert details.status_code == 200
    assert details.json == {"status": "ok", "node": node}

    rebooted = client.put("/api/v1/vm/action/reboot/fake_driver", json={"node": "3"})
    assert rebooted.json == {"status": "ok", "result": "Node 3 rebooted"}
    assert client.get("/api/v1/nodes/fake_driver/3").json["node"]["state"] == "rebooting"

    stopped = client.put("/api/v1/vm/stop/fake_driver", json={"node": "3"})
    assert stopped.status_code == 200
    assert stopped.json == {"status": "ok", "result": "Node 3 deleted"}
    assert node_names(client) == ["dummy-1", "dummy-2"]


def test_start_and_stop_on_the_default_cloud(client):
    """Without a cloud in the URL the default cloud starts and stops the VM."""
    assert client.post("/api/v1/vm/start", json=START).json["nodes"]["name"] == "dummy-3"
    assert node_names(client, "default") == ["dummy-1", "dummy-2", "dummy-3"]
    assert node_names(client) == ["dummy-1", "dummy-2"]
    stopped = client.put("/api/v1/vm/stop", json={"hostname": "dummy-3"})
    assert stopped.json["result"] == "Node 3 deleted"


def test_stop_by_hostname(client):
    """A VM can be named by its hostname instead of its id."""
    response = client.put("/api/v1/vm/stop/fake_driver", json={"hostname": "dummy-2"})
    assert response.json == {"status": "ok", "result": "Node 2 deleted"}
    assert node_names(client) == ["dummy-1"]


@pytest.mark.parametrize("reference", [{"node": "42"}, {"hostname": "nobody"}])
def test_stopping_an_unknown_node_is_404(client, reference):
    """No such node: 404 with the original's message, and nothing is destroyed."""
    response = client.put("/api/v1/vm/stop/fake_driver", json=reference)
    assert response.status_code == 404
    assert response.json["message"].startswith("no useful node id here")
    assert node_names(client) == ["dummy-1", "dummy-2"]


def test_details_of_an_unknown_node_is_404(client):
    """GET /nodes/<cloud>/<id> of a node that does not exist is a 404."""
    response = client.get("/api/v1/nodes/fake_driver/42")
    assert response.status_code == 404
    assert response.json["message"] == "no useful node id here: 42"


@pytest.mark.parametrize("action", ["poweron", "poweroff"])
def test_power_actions_the_driver_lacks_are_501_naming_it(client, action):
    """The Dummy driver cannot power nodes on or off: 501 naming the driver."""
    response = client.put(f"/api/v1/vm/action/{action}/fake_driver", json={"node": "1"})
    assert response.status_code == 501
    method = {"poweron": "start_node", "poweroff": "stop_node"}[action]
    assert response.json["message"] == (
        f"fake_driver: the Dummy Node Provider driver has no {method}"
    )


def test_unknown_vm_action_is_404(client):
    """An action that is none of reboot, poweron, poweroff is no page."""
    response = client.put("/api/v1/vm/action/explode/fake_driver", json={"node": "1"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [("image", "99"), ("size", "99")],
)
def test_unknown_image_or_size_is_400_naming_the_id(client, field, value):
    """An image or size the cloud does not have: 400 with the original's words and the id."""
    response = client.post("/api/v1/vm/start/fake_driver", json={**START, field: value})
    assert response.status_code == 400
    assert response.json["message"] == f"no useful {field} id here: {value}"
    assert node_names(client) == ["dummy-1", "dummy-2"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"keyname": "my-key"}, "keyname"),
        ({"metadata": {"team": "a"}}, "metadata"),
        ({"location": "1"}, "location"),
    ],
)
def test_options_the_driver_cannot_honour_are_400(client, extra, field):
    """The Dummy driver's create_node takes no key, metadata or location: a 400, not a drop."""
    response = client.post("/api/v1/vm/start/fake_driver", json={**START, **extra})
    assert response.status_code == 400
    assert response.json["message"] == f"{field}: the Dummy Node Provider driver does not take it"
    assert node_names(client) == ["dummy-1", "dummy-2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "missing fields: 'image', 'name', 'size'"),
        ({"image": "1", "size": "2"}, "missing field: 'name'"),
        ({**START, "name": ""}, "name: non-empty string"),
        ({**START, "image": 1}, "image: non-empty string"),
        ({**START, "size": None}, "size: non-empty string"),
        ({**START, "keyname": ""}, "keyname: non-empty string"),
        ({**START, "metadata": "x=y"}, "metadata: object of string values"),
        ({**START, "metadata": {"n": 1}}, "metadata: object of string values"),
        ({**START, "location": 3}, "location: non-empty string"),
        ([START], "Malformed JSON stream"),
    ],
)
def test_bad_start_bodies_are_400_naming_the_field(client, body, message):
    """Every malformed start body is a 400 whose message names the field."""
    response = client.post("/api/v1/vm/start/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"].startswith(message)


@pytest.mark.parametrize("path", ["/api/v1/vm/stop/fake_driver", "/api/v1/vm/action/reboot"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "no valid node id nor hostname here"),
        ({"node": "1", "hostname": "dummy-1"}, "node, hostname: give one of them, not both"),
        ({"node": ""}, "node: non-empty string"),
        ({"hostname": 12}, "hostname: non-empty string"),
    ],
)
def test_bad_node_references_are_400(client, path, body, message):
    """Stop and power bodies name one node by id or hostname, or get a 400 saying how."""
    response = client.put(path, json=body)
    assert response.status_code == 400
    assert response.json["message"] == message


def test_body_that_is_not_json_is_400(client):
    """A start body that is not JSON gets the original's message."""
    response = client.post("/api/v1/vm/start", data="name=x", content_type="application/json")
    assert response.status_code == 400
    assert response.json["message"] == "Malformed JSON stream"


def test_changes_need_role_agent_or_admin(app):
    """A user without agent or admin may read, not start, stop or reboot."""
    reader = token_client(app, "reader", roles=())
    assert reader.get("/api/v1/nodes/fake_driver/1").status_code == 200
    for method, path, body in [
        ("post", "/api/v1/vm/start", START),
        ("put", "/api/v1/vm/stop", {"node": "1"}),
        ("put", "/api/v1/vm/action/reboot", {"node": "1"}),
    ]:
        response = getattr(reader, method)(path, json=body)
        assert response.status_code == 403
    assert node_names(reader, "default") == ["dummy-1", "dummy-2"]


def test_changes_need_a_token(anonymous):
    """Without a token nothing starts."""
    assert anonymous.post("/api/v1/vm/start", json=START).status_code == 401
    assert anonymous.put("/api/v1/vm/stop", json={"node": "1"}).status_code == 401


def test_start_looks_up_sizes_once(app, client, monkeypatch):
    """Sizes are static: two starts list them once (then from the cache)."""
    with app.app_context():
        driver = clouds.get("fake_driver").driver
    calls = []
    real = driver.list_sizes
    monkeypatch.setattr(driver, "list_sizes", lambda *a: calls.append(a) or real(*a))
    for _ in range(2):
        assert client.post("/api/v1/vm/start/fake_driver", json=START).status_code == 200
    assert len(calls) == 1
