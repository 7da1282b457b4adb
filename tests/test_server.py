"""The installed `dispatcher run` command, talked to over HTTP as the original suite did."""

import json
import os
import socket
import subprocess
import time

import pytest
import requests
from helpers import ADMIN_PASSWORD, CHECKOUT_SETTINGS, DISPATCHER, EXAMPLES, Server, admin_token

# The module's tests that leave the server as they found it (they read) share conftest's
# `server`; the others start one of their own.


@pytest.fixture
def own_server(tmp_path):
    """A server of the test's own, for a test that changes it or stops it."""
    server = Server(tmp_path / "instance", DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def token(server):
    return admin_token(server)


def test_authenticate_then_check_the_token_in_the_json_body(server, token):
    """The original suite's connection tests: auth, then PUT /test/start with the token."""
    response = requests.put(f"{server.base}/test/start", json={"auth_token": token}, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "test": "passed", "authenticated": "yes"}


def test_server_lists_the_dummy_nodes_over_http(server, token):
    """GET /api/v1/nodes/fake_driver over HTTP gives the two Dummy nodes."""
    response = requests.get(
        f"{server.base}/nodes/fake_driver", headers={"X-Auth-Token": token}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert [node["name"] for node in body["nodes"]] == ["dummy-1", "dummy-2"]


def test_server_answers_401_and_404_as_json(server, token):
    """No token is the JSON 401; an unknown cloud the JSON 404, not an HTML page."""
    response = requests.get(f"{server.base}/nodes/fake_driver", timeout=10)
    assert response.status_code == 401
    assert response.json()["status"] == "error"
    response = requests.get(
        f"{server.base}/nodes/atlantis", params={"auth_token": token}, timeout=10
    )
    assert response.status_code == 404
    assert response.json()["message"] == "Unknown cloud: atlantis"


def test_server_root_answers_get_and_post(server):
    """The root answers ok to GET and POST, without a token."""
    assert requests.get(f"{server.base}/", timeout=10).json() == {"status": "ok"}
    assert requests.post(f"{server.base}/", json={}, timeout=10).json() == {"status": "ok"}


def test_request_log_hides_tokens_and_passwords(own_server):
    """The server's output never shows the token sent in ?auth_token= nor the password."""
    server, token = own_server, admin_token(own_server)
    requests.get(f"{server.base}/images", params={"auth_token": token}, timeout=10)
    output = server.stop()
    assert "method=GET endpoint=api_v1.listing path=/api/v1/images status=200" in output
    assert token not in output
    assert ADMIN_PASSWORD not in output


def test_run_says_where_its_instance_folder_is(tmp_path):
    """The first lines name the folder that holds the database and the secrets, and the
    settings file."""
    output = Server(tmp_path / "instance").stop()
    assert f"dispatcher: instance folder {tmp_path / 'instance'} (database, secrets)" in output
    settings = next(tmp_path.glob("settings-*.py"))
    assert f"dispatcher: settings file {settings}" in output


def test_run_in_the_checkout_reads_its_config_py(tmp_path):
    """Without DISPATCHER_SETTINGS, `dispatcher run` in a checkout (the package imported
    from it: `pip install -e .`, or here its folder first on the path, as CI installs the
    package plainly) reads its config.py, and serves the quick start's two Dummy clouds."""
    instance = tmp_path / "instance"
    server = Server(
        instance,
        DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD,
        DISPATCHER_SETTINGS="",
        PYTHONPATH=str(CHECKOUT_SETTINGS.parent),
    )
    try:
        token = admin_token(server)
        served = requests.get(f"{server.base}/cloud", headers={"X-Auth-Token": token}, timeout=10)
        nodes = requests.get(
            f"{server.base}/nodes/fake_driver", headers={"X-Auth-Token": token}, timeout=10
        )
    finally:
        output = server.stop()
    assert f"dispatcher: settings file {CHECKOUT_SETTINGS}" in output
    assert [(c["name"], c["type"]) for c in served.json()["served_cloud"]] == [
        ("default", "dummy"),
        ("fake_driver", "dummy"),
    ]
    assert [node["name"] for node in nodes.json()["nodes"]] == ["dummy-1", "dummy-2"]


def test_run_on_a_busy_port_is_one_line_and_exit_1(tmp_path):
    """Checked before anything is made: no serving line, no traceback, no database."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(DISPATCHER), "run", "--port", str(port)],
            env={**os.environ, "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert not (tmp_path / "instance" / "dispatcher.sqlite").exists()


def test_a_command_prints_its_result_and_no_log_lines(tmp_path):
    """`dispatcher users create`: the result on standard output, nothing on standard error."""
    env = {**os.environ, "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance")}
    run = [str(DISPATCHER), "db", "upgrade"]
    subprocess.run(run, env=env, capture_output=True, check=True, timeout=60)
    create = [str(DISPATCHER), "users", "create", "ann", "--role", "agent", "--password", "x" * 9]
    done = subprocess.run(create, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "created user 'ann' with roles agent\n",
        "",
    )


def test_first_run_without_a_password_generates_one_and_shows_it_once(tmp_path):
    """On an empty database: a user admin whose generated password is printed once, and works."""
    first = Server(tmp_path / "instance")
    first_output = first.stop()
    lines = [line for line in first_output.splitlines() if "shown only this once" in line]
    assert len(lines) == 1
    password = lines[0].rsplit(" ", 1)[1]
    second = Server(tmp_path / "instance")
    try:
        response = requests.post(
            f"{second.base}/auth", json={"username": "admin", "password": password}, timeout=10
        )
        assert response.status_code == 200
    finally:
        second_output = second.stop()
    assert "shown only this once" not in second_output
    assert password not in second_output


# The scripts that change what the server holds (a VM started and deleted, a node assigned,
# released and deleted, every token of the user revoked) run against a server of their own;
# the others read, and share the module's server.
CHANGING = {"vm.sh", "assignments.sh", "revoke_tokens.sh", "quotas.sh", "pools.sh", "requests.sh"}
# The server of pools.sh and requests.sh keeps the warm pool web on the Dummy cloud.
POOLS = {"web": {"clouds": [{"cloud": "default", "image": "1", "size": "1"}],
                 "min_ready": 1, "max_total": 2}}  # fmt: skip


@pytest.fixture
def pool_server(tmp_path):
    """A server of the test's own with the warm pool web."""
    server = Server(
        tmp_path / "instance", {"POOLS": POOLS}, DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD
    )
    yield server
    server.stop()


@pytest.mark.parametrize(
    "script",
    [
        "root.sh",
        "openapi.sh",
        "token.sh",
        "check_token.sh",
        "clouds.sh",
        "listings.sh",
        "pages.sh",
        "health.sh",
        "metrics.sh",
        "vm.sh",
        "assignments.sh",
        "quotas.sh",
        "pools.sh",
        "requests.sh",
        "revoke_tokens.sh",
    ],
)
def test_example_scripts_run_green(request, script):
    """Each script of api_call_examples/ runs against a live server and gets ok answers."""
    own = "pool_server" if script in ("pools.sh", "requests.sh") else "own_server"
    server = request.getfixturevalue(own if script in CHANGING else "server")
    env = {
        **os.environ,
        "BASE_URL": server.base,
        "DISPATCHER_USER": "admin",
        "DISPATCHER_PASSWORD": ADMIN_PASSWORD,
    }
    arguments = {"listings.sh": ["fake_driver"], "pages.sh": ["fake_driver", "1"]}
    args = [str(EXAMPLES / script), *arguments.get(script, [])]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    if script == "token.sh":
        assert len(lines) == 1 and len(lines[0]) > 40
        return
    if script == "openapi.sh":
        assert json.loads(result.stdout)["openapi"] == "3.1.0"
        return
    if script == "metrics.sh":
        assert "dispatcher_http_requests_total{" in result.stdout
        return
    answers = [json.loads(line) for line in lines]
    assert answers and all(answer["status"] == "ok" for answer in answers)
    if script == "listings.sh":
        assert [node["name"] for node in answers[0]["nodes"]] == ["dummy-1", "dummy-2"]
        assert len(answers) == 7
    if script == "pages.sh":
        assert [[node["name"] for node in answer["nodes"]] for answer in answers] == [
            ["dummy-1"],
            ["dummy-2"],
        ]
        assert [answer["next_marker"] for answer in answers] == ["1", None]
    if script == "health.sh":
        assert answers[0] == {"status": "ok", "database": "ok"}
        assert [cloud["reachable"] for cloud in answers[1]["clouds"]] == [True, True]
    if script == "vm.sh":
        assert [answer.get("result") for answer in answers[2:]] == [
            "Node 3 rebooted",
            "Node 3 deleted",
        ]
        assert answers[1]["node"]["name"] == "dummy-3"
    if script == "requests.sh":
        made, shown, listed, cancelled = answers
        assert made["request"]["state"] in ("ready", "pending")
        assert shown["request"]["id"] == made["request"]["id"]
        assert "requests" in listed
        assert cancelled["request"]["state"] == "cancelled"
    if script == "assignments.sh":
        assert answers[1]["result"] == "Node 1 assigned"
        assert answers[2]["result"] == f"Node 1 leased until {answers[2]['expires_at']}"
        assert answers[2]["expires_at"] > answers[1]["expires_at"]
        assert answers[3]["nodes"][0]["user"] == "zeppolo"
        assert answers[3]["nodes"][0]["expires_at"] == answers[2]["expires_at"]
        assert answers[4]["result"] == "Node 1 released and deleted"
        actions = [entry["action"] for entry in answers[5]["history"]]
        assert actions == ["release", "extend", "assign"]
    if script == "quotas.sh":
        me = answers[0]["quota"]
        assert (me["user"], me["roles"], me["enabled"]) == ("admin", ["admin", "agent"], True)
        assert me["pools"][0]["max_vms"] == {"limit": None, "used": 0, "left": None, "rule": None}
        rule = answers[1]["rule"]
        assert (rule["scope"], rule["name"], rule["max_vms"], rule["source"]) == (
            "role",
            "agent",
            10,
            "database",
        )
        assert answers[2]["rules"] == [rule]
        assert answers[3]["rules"] == [rule]
        assert answers[4]["result"] == "quota rule of role agent removed"
    if script == "pools.sh":
        assert [pool["name"] for pool in answers[0]["pools"]] == ["web"]
        assert answers[0]["pools"][0]["override"] is None
        held = answers[1]["pool"]
        assert (held["min_ready"], held["configured"]["min_ready"], held["paused"]) == (0, 1, True)
        assert held["override"]["set_by"] == "admin"
        assert answers[2]["pool"]["override"] == held["override"]
        assert answers[3]["result"] == "pool web: override cleared"
        assert (answers[3]["pool"]["min_ready"], answers[3]["pool"]["override"]) == (1, None)


def test_run_keeps_a_warm_pool_on_the_dummy_cloud(tmp_path):
    """With POOLS set, `dispatcher run` runs the pool manager in a thread: the pool fills
    by itself, and an assign by vm_type over HTTP gets one of its VMs."""
    pools = {
        "web": {
            "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
            "min_ready": 2,
            "max_total": 4,
            "release": "reuse",
        }
    }
    server = Server(
        tmp_path / "instance",
        {"POOLS": pools, "POOLS_INTERVAL": 0.2},
        DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    try:
        headers = {"X-Auth-Token": admin_token(server)}
        deadline = time.monotonic() + 20
        while True:
            shown = requests.get(f"{server.base}/pools/web", headers=headers, timeout=10).json()
            if shown["pool"]["free"] == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert (shown["pool"]["free"], shown["pool"]["booting"]) == (2, 0), shown
        assigned = requests.put(
            f"{server.base}/vm/action/assign",
            json={"vm_type": "web", "user": "newcomer"},
            headers=headers,
            timeout=10,
        )
        assert assigned.status_code == 200, assigned.text
        assert assigned.json()["hostname"].startswith("dummy-")
    finally:
        output = server.stop()
    assert "dispatcher: worker on web, the leases, a pass every 0.2 s" in output
