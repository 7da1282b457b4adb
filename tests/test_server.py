"""The installed `dispatcher run` command, talked to over HTTP as clients do."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port

DISPATCHER = Path(sys.executable).with_name("dispatcher")


@pytest.fixture
def server(tmp_path):
    """`dispatcher run` on a free loopback port, with the embedded defaults."""
    port = free_port()
    env = {**os.environ, "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance")}
    process = subprocess.Popen(
        [str(DISPATCHER), "run", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{base}/", timeout=1)
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"dispatcher run did not start:\n{process.stdout.read()}")
            time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=10)


def test_server_lists_the_dummy_nodes_over_http(server):
    """GET /api/v1/nodes/fake_driver over HTTP gives the two Dummy nodes."""
    response = requests.get(f"{server}/nodes/fake_driver", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert [node["name"] for node in body["nodes"]] == ["dummy-1", "dummy-2"]


def test_server_answers_an_unknown_cloud_with_the_404_envelope(server):
    """An unknown cloud over HTTP is the JSON 404, not an HTML page."""
    response = requests.get(f"{server}/nodes/atlantis", timeout=10)
    assert response.status_code == 404
    assert response.json()["message"] == "Unknown cloud: atlantis"


def test_server_root_answers_get_and_post(server):
    """The original suite's first check: the root answers ok to GET and POST."""
    assert requests.get(f"{server}/", timeout=10).json() == {"status": "ok"}
    assert requests.post(f"{server}/", json={}, timeout=10).json() == {"status": "ok"}
