"""The Cistern bookkeeping backend, against a contract server that speaks Cistern's API."""

import logging

import pytest
import requests
from cistern_server import ASSIGNED, FREE, CisternServer
from conftest import ASSIGNMENT_KEYS, token_client
from helpers import ADMIN_PASSWORD, Server
from werkzeug.exceptions import ServiceUnavailable

# The dispatcher's listing of the Dummy cloud's nodes.
NODES = "/api/v1/nodes/fake_driver"
# Cistern's rows of that cloud (the same shape of path, on Cistern's server).
CISTERN_NODES = "/api/v1/nodes/fake_driver"
ALICE = {"user": "alice", "vm_type": "jupyter"}
# Short enough for a quick suite, long enough for the loopback contract server to answer.
TIMEOUT = (0.5, 0.5)


def cistern_client(make_app, url, **overrides):
    """A client (role agent) of an app whose bookkeeping is the Cistern at ``url``."""
    config = {"ASSIGNMENT_BACKEND": "cistern", "CISTERN_URL": url, "CISTERN_TIMEOUT": TIMEOUT}
    return token_client(make_app(**{**config, **overrides}))


@pytest.fixture
def client(make_app, cistern):
    """A client (role agent) of an app kept by the contract server."""
    return cistern_client(make_app, cistern.url)


def assign(client, **body):
    """PUT vm/action/assign on fake_driver, for alice (jupyter) unless ``body`` says otherwise."""
    return client.put("/api/v1/vm/action/assign/fake_driver", json={**ALICE, **body})


def release(client, **body):
    """PUT vm/action/release on fake_driver."""
    return client.put("/api/v1/vm/action/release/fake_driver", json=body)


def dummy_names(client):
    """The names of the Dummy cloud's nodes, as the dispatcher lists them."""
    return [node["name"] for node in client.get(NODES).get_json()["nodes"]]


def history(client):
    """The assignment history of fake_driver, newest first."""
    return client.get("/api/v1/vm/history/fake_driver").get_json()["history"]


def assert_unavailable(response, message):
    """The 503 envelope, with ``message``."""
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "error",
        "status_code": 503,
        "status_short_message": "Service Unavailable",
        "status_long_message": ServiceUnavailable.description,
        "message": message,
    }


def test_assign_and_release_over_http_against_a_running_server(tmp_path, cistern):
    """The original suite's flow on `dispatcher run`: assign by hostname and id, release."""
    server = Server(
        tmp_path / "instance",
        {"ASSIGNMENT_BACKEND": "cistern", "CISTERN_URL": cistern.url},
        DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    try:
        answer = requests.post(
            f"{server.base}/auth",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=10,
        )
        with requests.Session() as http:
            http.headers["X-Auth-Token"] = answer.json()["token"]
            assign_url = f"{server.base}/vm/action/assign/fake_driver"
            by_hostname = http.put(assign_url, json={"hostname": "dummy-1", **ALICE}, timeout=10)
            by_id = http.put(
                assign_url, json={"node": "2", "user": "bob", "vm_type": "rstudio"}, timeout=10
            )
            status = http.get(f"{server.base}/vm/status/fake_driver", timeout=10)
            released = http.put(
                f"{server.base}/vm/action/release/fake_driver",
                json={"hostname": "dummy-1"},
                timeout=10,
            )
            nodes = http.get(f"{server.base}/nodes/fake_driver", timeout=10)
    finally:
        server.stop()
    assert by_hostname.json() == {
        "status": "ok",
        "id_vm": "1",
        "id": 1,
        "result": "Node 1 assigned",
    }
    assert by_id.json() == {"status": "ok", "id_vm": "2", "id": 2, "result": "Node 2 assigned"}
    held = {row["hostname"]: (row["status"], row["user"]) for row in status.json()["nodes"]}
    assert held == {"dummy-1": (ASSIGNED, "alice"), "dummy-2": (ASSIGNED, "bob")}
    assert released.status_code == 200
    assert released.json() == {
        "status": "ok",
        "id_vm": "1",
        "id": 1,
        "result": "Node 1 released and deleted",
    }
    assert [node["name"] for node in nodes.json()["nodes"]] == ["dummy-2"]
    assert cistern.requests == [
        ("GET", CISTERN_NODES, {"with_faulty_nodes": True}),
        ("POST", "/api/v1/vm/assign/fake_driver", {"hostname": "dummy-1", **ALICE}),
        ("GET", CISTERN_NODES, {"with_faulty_nodes": True}),
        (
            "POST",
            "/api/v1/vm/assign/fake_driver",
            {"hostname": "dummy-2", "user": "bob", "vm_type": "rstudio"},
        ),
        ("GET", CISTERN_NODES, {"with_faulty_nodes": False}),
        ("GET", CISTERN_NODES, {"with_faulty_nodes": True}),
        ("PUT", "/api/v1/vm/release/fake_driver", {"hostname": "dummy-1"}),
    ]


def test_status_lists_the_non_faulty_rows_asking_cistern_once(client, cistern):
    """vm/status gives Cistern's free and assigned rows, asking without the faulty ones."""
    response = client.get("/api/v1/vm/status/fake_driver")
    assert response.status_code == 200
    nodes = response.get_json()["nodes"]
    assert [(row["hostname"], row["status"]) for row in nodes] == [
        ("dummy-1", FREE),
        ("dummy-2", FREE),
    ]
    assert all(set(row) == ASSIGNMENT_KEYS for row in nodes)
    assert cistern.requests == [("GET", CISTERN_NODES, {"with_faulty_nodes": False})]


def test_the_original_host_port_and_api_settings_reach_cistern(make_app):
    """Without CISTERN_URL the base is http://CISTERN_HOST:CISTERN_PORT/api/CISTERN_API."""
    with CisternServer(api="v2") as cistern_v2:
        client = cistern_client(
            make_app,
            None,
            CISTERN_HOST="127.0.0.1",
            CISTERN_PORT=cistern_v2.port,
            CISTERN_API="v2",
        )
        response = client.get("/api/v1/vm/status/fake_driver")
    assert response.status_code == 200
    assert len(response.get_json()["nodes"]) == 2
    assert cistern_v2.requests == [
        ("GET", "/api/v2/nodes/fake_driver", {"with_faulty_nodes": False})
    ]


def test_assign_by_node_id_sends_the_hostname_cistern_knows(client, cistern):
    """A node id is resolved through GET nodes; the POST names the hostname."""
    response = assign(client, node="2")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "id_vm": "2",
        "id": 2,
        "result": "Node 2 assigned",
    }
    assert cistern.requests == [
        ("GET", CISTERN_NODES, {"with_faulty_nodes": True}),
        ("POST", "/api/v1/vm/assign/fake_driver", {"hostname": "dummy-2", **ALICE}),
    ]
    assert cistern.row("dummy-2")["user"] == "alice"
    assert [entry["outcome"] for entry in history(client)] == ["ok"]


def test_assigning_a_held_vm_is_409_naming_the_holder_without_a_post(client, cistern):
    """An assigned or faulty VM is refused from Cistern's rows; Cistern gets no new POST."""
    assert assign(client, hostname="dummy-1").status_code == 200
    taken = assign(client, hostname="dummy-1", user="bob")
    faulty = assign(client, node="99")
    assert taken.status_code == 409
    assert taken.get_json()["message"] == "node 1 is assigned to alice (jupyter)"
    assert faulty.status_code == 409
    assert faulty.get_json()["message"] == "node 99 is faulty"
    assert cistern.count("POST") == 1
    assert cistern.row("dummy-1")["user"] == "alice"


def test_stopping_a_vm_cistern_says_is_assigned_is_409_unless_forced(client, cistern):
    """vm/stop asks Cistern who holds the VM: a held one stays, unless forced."""
    assert assign(client, hostname="dummy-1").status_code == 200
    refused = client.put("/api/v1/vm/stop/fake_driver", json={"hostname": "dummy-1"})
    assert refused.status_code == 409
    assert refused.get_json()["message"].startswith("node 1 is assigned to alice (jupyter)")
    assert dummy_names(client) == ["dummy-1", "dummy-2"]
    forced = client.put("/api/v1/vm/stop/fake_driver", json={"node": "1", "force": True})
    assert forced.get_json() == {"status": "ok", "result": "Node 1 deleted"}
    assert dummy_names(client) == ["dummy-2"]
    assert [(e["action"], e["user"], e["outcome"]) for e in history(client)][:2] == [
        ("stop", "alice", "ok"),
        ("stop", "alice", "409"),
    ]


def test_cistern_down_keeps_vm_stop_from_destroying(make_app, refusing_port):
    """Who holds the VM cannot be asked: the stop is a 503 and the VM stays."""
    client = cistern_client(make_app, f"http://127.0.0.1:{refusing_port}/api/v1")
    response = client.put("/api/v1/vm/stop/fake_driver", json={"node": "2", "force": True})
    assert_unavailable(response, "cistern: cannot connect")
    assert dummy_names(client) == ["dummy-1", "dummy-2"]


@pytest.mark.parametrize(
    "call, method, hostname, message",
    [
        (assign, "POST", "dummy-2", "Node 2 already assigned"),
        (release, "PUT", "dummy-1", "Node 1 is not assigned"),
    ],
)
def test_a_cistern_error_answer_is_400_passing_its_message_on(
    client, cistern, call, method, hostname, message
):
    """Cistern's {"status": "error"} (here: a race lost) is a 400 with its message; VMs stay."""
    assert assign(client, hostname="dummy-1").status_code == 200
    # Cistern's rows say the call may go ahead; Cistern itself then refuses it.
    cistern.reject(method, message)
    response = call(client, hostname=hostname)
    assert response.status_code == 400
    assert response.get_json()["message"] == f"cistern: {message}"
    assert cistern.count(method) == (2 if method == "POST" else 1)
    assert dummy_names(client) == ["dummy-1", "dummy-2"]
    assert [entry["outcome"] for entry in history(client)] == ["400", "ok"]


def test_emulate_sends_nothing_that_changes_cistern(client, cistern):
    """A dry run of assign and release reads Cistern's rows and makes no POST or PUT."""
    dry_assign = assign(client, hostname="dummy-1", emulate=True)
    assert dry_assign.status_code == 200
    assert dry_assign.get_json()["result"] == "Node 1 would be assigned to alice (emulated)"
    assert cistern.count("POST") == 0
    assert assign(client, hostname="dummy-2").status_code == 200
    dry_release = release(client, node="2", emulate=True)
    assert dry_release.status_code == 200
    assert dry_release.get_json() == {
        "status": "ok",
        "id_vm": "2",
        "id": 2,
        "result": "Node 2 would be released and deleted (emulated)",
    }
    assert cistern.count("PUT") == 0
    assert cistern.row("dummy-2")["status"] == ASSIGNED
    assert dummy_names(client) == ["dummy-1", "dummy-2"]
    # Only the real assign is history; dry runs record nothing.
    assert [entry["action"] for entry in history(client)] == ["assign"]


def test_cistern_down_is_503_and_changes_nothing(make_app, refusing_port):
    """A Cistern that refuses connections: 503 envelopes, the VM kept, no success recorded."""
    client = cistern_client(make_app, f"http://127.0.0.1:{refusing_port}/api/v1")
    assert_unavailable(client.get("/api/v1/vm/status/fake_driver"), "cistern: cannot connect")
    assert_unavailable(assign(client, hostname="dummy-1"), "cistern: cannot connect")
    assert_unavailable(release(client, hostname="dummy-1"), "cistern: cannot connect")
    assert dummy_names(client) == ["dummy-1", "dummy-2"]
    assert [(entry["action"], entry["outcome"]) for entry in history(client)] == [
        ("release", "503"),
        ("assign", "503"),
    ]


def test_cistern_timing_out_is_503_and_changes_nothing(make_app, hanging_port):
    """A Cistern that accepts and never answers: 503 after the read timeout, the VM kept."""
    client = cistern_client(make_app, f"http://127.0.0.1:{hanging_port}/api/v1")
    response = release(client, hostname="dummy-1")
    assert_unavailable(response, "cistern: no answer within 0.5 seconds")
    assert dummy_names(client) == ["dummy-1", "dummy-2"]
    assert [(entry["action"], entry["outcome"]) for entry in history(client)] == [
        ("release", "503")
    ]


@pytest.mark.parametrize(
    "action, method",
    [("status", "GET"), ("assign", "POST"), ("release", "PUT")],
)
def test_a_request_that_reached_cistern_and_timed_out_is_not_repeated(
    client, cistern, action, method
):
    """Cistern may have acted on it: one request, a 503, the VM kept, no success recorded."""
    assert assign(client, hostname="dummy-1").status_code == 200
    before = cistern.count(method)
    cistern.misbehave(method, "hang")
    if action == "status":
        response = client.get("/api/v1/vm/status/fake_driver")
    elif action == "assign":
        response = assign(client, hostname="dummy-2")
    else:
        response = release(client, hostname="dummy-1")
    assert_unavailable(response, "cistern: no answer within 0.5 seconds")
    assert cistern.count(method) == before + 1
    assert dummy_names(client) == ["dummy-1", "dummy-2"]
    # vm/status is not history; a failed assign or release is, as a 503 over the first assign.
    expected = ["ok"] if action == "status" else ["503", "ok"]
    assert [entry["outcome"] for entry in history(client)] == expected


@pytest.mark.parametrize("retries", [0, 2])
def test_connection_errors_are_retried_cistern_retries_times(
    make_app, refusing_port, caplog, retries
):
    """A connection never made is tried 1 + CISTERN_RETRIES times, then 503."""
    url = f"http://127.0.0.1:{refusing_port}/api/v1"
    client = cistern_client(make_app, url, CISTERN_RETRIES=retries)
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        response = client.get("/api/v1/vm/status/fake_driver")
    assert response.status_code == 503
    # urllib3 logs each new connection it tries to open: the exact number of attempts.
    attempts = [
        record
        for record in caplog.records
        if record.getMessage().startswith("Starting new HTTP connection")
        and record.getMessage().endswith(f"127.0.0.1:{refusing_port}")
    ]
    assert len(attempts) == 1 + retries


def test_an_html_500_from_cistern_is_503_and_not_repeated(client, cistern):
    """A Cistern answering an HTML error page is unavailable, asked once."""
    cistern.misbehave("GET", "html")
    response = client.get("/api/v1/vm/status/fake_driver")
    assert_unavailable(response, "cistern: answered HTTP 500 without its JSON envelope")
    assert cistern.count("GET") == 1


@pytest.mark.parametrize(
    "call, body",
    [
        (assign, {"hostname": "nowhere"}),
        (assign, {"node": "42"}),
        (release, {"hostname": "nowhere"}),
    ],
)
def test_a_vm_cistern_does_not_know_is_404(client, cistern, call, body):
    """A hostname or node id Cistern lacks is 404, without a POST or PUT."""
    response = call(client, **body)
    assert response.status_code == 404
    assert response.get_json()["message"].startswith("no useful node id here")
    assert cistern.count("POST") == cistern.count("PUT") == 0
    assert cistern.count("GET") == 1


def test_a_lease_beside_cistern_is_400_and_asks_cistern_nothing(client, cistern):
    """Cistern keeps no leases: an assign or an extend that asks for one is refused first."""
    leased = assign(client, node="2", lease=60)
    extended = client.put("/api/v1/vm/action/extend/fake_driver", json={"node": "2", "lease": 60})

    for response in (leased, extended):
        assert response.status_code == 400
        assert response.get_json()["message"] == (
            "lease: leases need the local ledger (ASSIGNMENT_BACKEND=local)"
        )
    assert cistern.requests == []
