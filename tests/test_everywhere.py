"""Every cloud at once: ``GET /api/v1/<listing>/all`` asks each cloud concurrently and
answers for each, whether it answered, refused or hung; ``all`` is no cloud of its own."""

import time

import pytest
from conftest import ScriptedCloud, assert_error, ec2_cloud, token_client
from helpers import INTERNAL_ERROR, NO_INSTANCES

from dispatcher import clouds, create_app
from dispatcher.clouds.breaker import CircuitBreaker
from dispatcher.config import DUMMY_FARM
from dispatcher.errors import ConfigurationError

TIMEOUT = 2


def test_nodes_of_every_cloud_each_tagged_with_its_cloud(app):
    client = token_client(app)

    answer = client.get("/api/v1/nodes/all")

    assert answer.status_code == 200, answer.json
    listed = [(node["cloud"], node["id"], node["name"]) for node in answer.json["nodes"]]
    assert listed == [
        ("default", "1", "dummy-1"),
        ("default", "2", "dummy-2"),
        ("fake_driver", "1", "dummy-1"),
        ("fake_driver", "2", "dummy-2"),
    ]
    outcomes = answer.json["clouds"]
    assert [(c["name"], c["status"], c["count"]) for c in outcomes] == [
        ("default", "ok", 2),
        ("fake_driver", "ok", 2),
    ]
    assert all(c["latency_ms"] >= 0 and "message" not in c for c in outcomes)
    assert client.get("/api/v2/sizes/all").json["clouds"][1]["count"] > 0


def test_a_refusing_and_a_hanging_cloud_are_entries_not_a_failure(
    make_app, refusing_port, hanging_port
):
    farm = {
        **DUMMY_FARM,
        "refusing": ec2_cloud(refusing_port),
        "hanging": ec2_cloud(hanging_port),
    }
    client = token_client(make_app(CLOUD_FARM=farm, CLOUD_TIMEOUT=TIMEOUT))
    started = time.monotonic()

    answer = client.get("/api/v1/nodes/all")

    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.json
    # The hanging cloud is waited for its timeout, not twice nor without end; the other
    # clouds' listings and the threads add about a second of their own on a loaded machine.
    assert elapsed < 2 * TIMEOUT
    outcomes = {c["name"]: c for c in answer.json["clouds"]}
    assert list(outcomes) == ["default", "fake_driver", "refusing", "hanging"]
    assert (outcomes["default"]["status"], outcomes["default"]["count"]) == ("ok", 2)
    assert outcomes["refusing"]["status"] == "error"
    assert "Connection refused" in outcomes["refusing"]["message"]
    assert outcomes["hanging"]["status"] == "error" and outcomes["hanging"]["count"] == 0
    assert outcomes["hanging"]["message"].startswith("hanging:")
    assert {node["cloud"] for node in answer.json["nodes"]} == {"default", "fake_driver"}
    assert "loopback-secret-never-shown" not in answer.text


def test_pages_over_every_cloud_by_cloud_then_id(app):
    client = token_client(app)
    seen, marker = [], None
    while True:
        query = {"limit": 3, **({"marker": marker} if marker else {})}
        answer = client.get("/api/v1/nodes/all", query_string=query).json
        seen += [f"{node['cloud']}/{node['id']}" for node in answer["nodes"]]
        marker = answer["next_marker"]
        if marker is None:
            break
    assert seen == ["default/1", "default/2", "fake_driver/1", "fake_driver/2"]
    assert_error(
        client.get("/api/v1/nodes/all", query_string={"marker": "nowhere/9"}),
        400,
        "marker: nothing called nowhere/9 in this listing",
    )


def test_all_is_no_cloud_of_its_own(app):
    client = token_client(app)
    message = (
        "cloud: all names every cloud, for the listings only (GET /api/v1/<listing>/all): "
        "name one cloud here"
    )
    assert_error(client.put("/api/v1/vm/stop/all", json={"node": "1"}), 400, message)
    assert_error(client.get("/api/v1/vm/status/all"), 400, message)
    assert_error(client.get("/api/v1/nodes/all/1"), 400, message)
    with pytest.raises(ConfigurationError) as caught:
        create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
                "CLOUD_FARM": {**DUMMY_FARM, "all": {"ENGINE": "dummy"}},
            }
        )
    assert str(caught.value) == (
        "CLOUD_FARM: 'all' is reserved (GET /api/v1/<listing>/all reads every cloud): "
        "name the cloud otherwise"
    )


def test_a_failing_cloud_opens_its_circuit_then_is_asked_again(make_app):
    """CIRCUIT_FAILURES failures in a row (500s of the cloud): the next request answers 503
    at once without asking the cloud, every view says so; after CIRCUIT_SECONDS the cloud is
    asked again, and an answer closes the circuit."""
    with ScriptedCloud([INTERNAL_ERROR, INTERNAL_ERROR, NO_INSTANCES]) as cloud:
        app = make_app(
            CLOUD_FARM={**DUMMY_FARM, "flaky": ec2_cloud(cloud.port)},
            CIRCUIT_FAILURES=2,
            CIRCUIT_SECONDS=1,
        )
        client = token_client(app)
        # The circuit's time moves when the test says, not with a busy machine's.
        now = [0.0]
        with app.app_context():
            clouds.get("flaky").circuit = CircuitBreaker("flaky", 2, 1, clock=lambda: now[0])
        assert [client.get("/api/v1/nodes/flaky").status_code for _ in range(2)] == [502, 502]
        assert len(cloud.requests) == 2

        started = time.monotonic()
        refused = client.get("/api/v1/nodes/flaky")
        elapsed = time.monotonic() - started

        assert refused.status_code == 503
        assert refused.json["message"].startswith("flaky: circuit open after 2 failures in a row, ")
        assert refused.json["message"].endswith(" s left before it is asked again")
        assert refused.headers["Retry-After"] == "1"
        assert len(cloud.requests) == 2 and elapsed < 0.5  # not asked: no wait for it
        everywhere = {c["name"]: c for c in client.get("/api/v1/nodes/all").json["clouds"]}
        assert "circuit open" in everywhere["flaky"]["message"]
        deep = {c["name"]: c for c in client.get("/api/v1/health?deep=1").json["clouds"]}
        assert (deep["flaky"]["circuit"], deep["default"]["circuit"]) == ("open", "closed")
        metrics = app.test_client().get("/metrics").get_data(as_text=True)
        assert 'dispatcher_cloud_circuit_open{cloud="flaky"} 1.0' in metrics
        assert len(cloud.requests) == 2

        now[0] += 1.1  # CIRCUIT_SECONDS later
        again = client.get("/api/v1/nodes/flaky")

        assert again.status_code == 200 and len(cloud.requests) == 3
        assert client.get("/api/v1/health?deep=1").json["clouds"][-1]["circuit"] == "closed"
