"""Cloud failures reach the client as the JSON envelope; the pool resolves CLOUD_FARM."""

import pytest
from conftest import ScriptedCloud, ec2_cloud, token_client
from helpers import INTERNAL_ERROR, NO_INSTANCES

from dispatcher import clouds
from dispatcher.clouds import nodes
from dispatcher.clouds.pool import parse_farm
from dispatcher.errors import CloudError, ConfigurationError

AUTH_FAILURE = (
    401,
    "<Response><Errors><Error><Code>AuthFailure</Code>"
    "<Message>AWS was not able to validate the provided access credentials</Message>"
    "</Error></Errors><RequestID>r-2</RequestID></Response>",
)


def get_nodes(make_app, cloud_entry, **config):
    app = make_app(CLOUD_FARM={"default": {"ENGINE": "dummy"}, "ec2": cloud_entry}, **config)
    return token_client(app).get("/api/v1/nodes/ec2")


def assert_cloud_error(response, status, message):
    body = response.get_json()
    assert response.status_code == status
    assert body["status"] == "error"
    assert body["status_code"] == status
    assert body["message"] == message
    assert "Traceback" not in response.get_data(as_text=True)
    assert "loopback-secret-never-shown" not in response.get_data(as_text=True)
    assert "AKIDLOOPBACKKEY" not in response.get_data(as_text=True)


def test_cloud_refusing_connections_is_502(make_app, refusing_port):
    """A cloud nobody listens for answers 502 with the reason, not a traceback."""
    response = get_nodes(make_app, ec2_cloud(refusing_port))
    assert_cloud_error(response, 502, "ec2: Connection refused")
    assert response.get_json()["status_short_message"] == "Bad Gateway"


@pytest.mark.parametrize("engine", ["ec2", "eucalyptus"])
def test_cloud_hanging_past_the_timeout_is_504(make_app, hanging_port, engine):
    """A cloud that accepts and never answers gives 504 once CLOUD_TIMEOUT passes."""
    entry = {**ec2_cloud(hanging_port), "ENGINE": engine}
    response = get_nodes(make_app, entry, CLOUD_TIMEOUT=1)
    assert_cloud_error(response, 504, "ec2: no answer within 1 seconds")


def test_provider_error_passes_the_providers_message(make_app):
    """An error the provider answers reaches the client as a 502 with its message."""
    with ScriptedCloud([INTERNAL_ERROR]) as cloud:
        response = get_nodes(make_app, ec2_cloud(cloud.port))
    assert response.status_code == 502
    assert "InternalError: An internal error has occurred" in response.get_json()["message"]
    assert len(cloud.requests) == 1


def test_rejected_credentials_rebuild_the_driver_and_retry_once_more(make_app):
    """A 401 rebuilds the driver and tries again: the second try succeeds."""
    with ScriptedCloud([AUTH_FAILURE, NO_INSTANCES]) as cloud:
        response = get_nodes(make_app, ec2_cloud(cloud.port))
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "nodes": []}
    assert len(cloud.requests) == 2
    assert all("Action=DescribeInstances" in path for path in cloud.requests)


@pytest.mark.parametrize("max_iterations", [1, 3])
def test_credentials_rejected_every_time_stop_after_max_iterations(make_app, max_iterations):
    """A cloud that always answers 401 is tried MAX_ITERATIONS times, then 502."""
    with ScriptedCloud([AUTH_FAILURE]) as cloud:
        response = get_nodes(make_app, ec2_cloud(cloud.port), MAX_ITERATIONS=max_iterations)
    assert_cloud_error(response, 502, "ec2: credentials rejected")
    assert len(cloud.requests) == max_iterations


def test_a_driver_refusing_its_parameters_is_a_json_error(make_app):
    """EXTRA_PARAMS the driver does not take give an error naming the parameter."""
    entry = {"ENGINE": "dummy", "EXTRA_PARAMS": {"ex_bogus": 1}}
    response = get_nodes(make_app, entry)
    assert response.status_code == 502
    assert "ex_bogus" in response.get_json()["message"]


@pytest.mark.parametrize(
    ("engine", "region"),
    [
        ("ec2_us_west", "us-west-1"),
        ("ec2_us_east", "us-east-1"),
        ("ec2_eu_west", "eu-west-1"),
        ("ec2_eu_east", "eu-central-1"),
    ],
)
def test_original_ec2_engine_names_are_the_ec2_driver_with_a_region(make_app, engine, region):
    """The original's per-region EC2 engine names still work."""
    farm = {"default": {"ENGINE": engine, "USER": "k", "PASSWORD": "s"}}
    app = make_app(CLOUD_FARM=farm, CLOUD_TIMEOUT=3)
    with app.app_context():
        driver = clouds.get(None).driver
    assert driver.type == "ec2"
    assert driver.region_name == region
    assert driver.connection.timeout == 3


@pytest.mark.parametrize(
    ("engine", "params", "driver_class"),
    [
        ("openstack", {"ex_force_auth_url": "http://127.0.0.1:5000"}, "OpenStack_1_1_NodeDriver"),
        ("eucalyptus", {"host": "127.0.0.1"}, "EucNodeDriver"),
        ("rackspace", {"region": "dfw"}, "RackspaceNodeDriver"),
        ("OPENSTACK", {"ex_force_auth_url": "http://127.0.0.1:5000"}, "OpenStack_1_1_NodeDriver"),
        ("digitalocean", {}, "DigitalOcean_v2_NodeDriver"),
        ("DIGITAL_OCEAN", {}, "DigitalOcean_v2_NodeDriver"),
    ],
)
def test_any_libcloud_provider_name_is_an_engine(make_app, engine, params, driver_class):
    """ENGINE is any libcloud compute provider, by value or constant name, with the timeout."""
    entry = {"ENGINE": engine, "USER": "k", "EXTRA_PARAMS": params}
    if "DIGITAL" not in engine.upper():  # DigitalOcean takes a token and no secret
        entry["PASSWORD"] = "s"
    app = make_app(CLOUD_FARM={"default": entry}, CLOUD_TIMEOUT=3)
    with app.app_context():
        driver = clouds.get(None).driver
    assert type(driver).__name__ == driver_class
    assert driver.connection.timeout == 3


def test_credentials_from_the_environment(monkeypatch):
    """USER_ENV and PASSWORD_ENV take a credential from the named variable."""
    monkeypatch.setenv("TEST_OS_USER", "from-env-user")
    monkeypatch.setenv("TEST_OS_PASSWORD", "from-env-password")
    entry = {"ENGINE": "openstack", "USER_ENV": "TEST_OS_USER", "PASSWORD_ENV": "TEST_OS_PASSWORD"}
    spec = parse_farm({"default": entry})["default"]
    assert (spec.key, spec.secret) == ("from-env-user", "from-env-password")
    assert "from-env-password" not in repr(spec)


@pytest.mark.parametrize(
    ("farm", "message"),
    [
        ({}, "CLOUD_FARM is empty"),
        ({"default": {"USER": "x"}}, "needs at least ENGINE"),
        ({"default": {"ENGINE": "no_such_cloud"}}, "is not a libcloud compute provider"),
        ({"default": {"ENGINE": "dummy", "PASSWD": "x"}}, "unknown keys PASSWD"),
        ({"default": {"ENGINE": "ec2", "PASSWORD_ENV": "UNSET_VARIABLE_X"}}, "UNSET_VARIABLE_X"),
    ],
)
def test_farm_that_cannot_work_stops_the_start(make_app, farm, message):
    """A CLOUD_FARM that cannot work is refused when the app is built, with the reason."""
    with pytest.raises(ConfigurationError, match=message):
        make_app(CLOUD_FARM=farm)


@pytest.fixture
def cloud_lookups(app, monkeypatch):
    """The names the app's cloud pool is asked for, in order, from now on."""
    pool = app.extensions["dispatcher.clouds"]
    asked, resolve = [], pool.get

    def counted(name):
        asked.append(name)
        return resolve(name)

    monkeypatch.setattr(pool, "get", counted)
    return asked


def test_a_request_resolves_its_cloud_once(client, cloud_lookups):
    """vm/start, an assign and a release each look their cloud up once, however many
    calls to it and to the bookkeeping they make."""
    body = {"name": "web-1", "image": "1", "size": "2", "vm_type": "web"}
    started = client.post("/api/v1/vm/start/fake_driver", json=body)
    assert started.status_code == 200, started.get_json()
    assert cloud_lookups == ["fake_driver"]

    node = started.get_json()["nodes"]["id"]
    cloud_lookups.clear()
    assign = {"node": node, "user": "alice", "vm_type": "web"}
    assert client.put("/api/v1/vm/action/assign/fake_driver", json=assign).status_code == 200
    assert cloud_lookups == ["fake_driver"]

    cloud_lookups.clear()
    release = client.put("/api/v1/vm/action/release", json={"hostname": "no-such-vm"})
    assert release.status_code == 404
    assert cloud_lookups == [None]
    cloud_lookups.clear()
    assert (
        client.put("/api/v1/vm/action/release/fake_driver", json={"node": node}).status_code == 200
    )
    assert cloud_lookups == ["fake_driver"]


def test_a_cloud_builds_its_driver_once(app, client):
    """One driver per cloud per process: listings and a start on one cloud share it."""
    with app.app_context():
        cloud = clouds.get("fake_driver")
    assert client.get("/api/v1/nodes/fake_driver").status_code == 200
    driver = cloud.driver
    assert (
        client.post(
            "/api/v1/vm/start/fake_driver", json={"name": "a", "image": "1", "size": "2"}
        ).status_code
        == 200
    )
    assert client.get("/api/v1/images/fake_driver").status_code == 200
    assert cloud.driver is driver


def echoing_error(*texts: str):
    """A 500 from an EC2 cloud whose error message echoes ``texts`` (as a request)."""
    echoed = " ".join(texts)
    return (
        500,
        "<Response><Errors><Error><Code>InternalError</Code>"
        f"<Message>cannot parse request {echoed}</Message>"
        "</Error></Errors><RequestID>r-4</RequestID></Response>",
    )


@pytest.mark.parametrize(
    "password", ["loopback-secret-never-shown", "p@ss/word+1 &x=y"], ids=["plain", "special"]
)
def test_a_cloud_echoing_its_credentials_shows_none_of_them(make_app, caplog, password):
    """A provider error that repeats the request: every configured credential of that
    cloud, as is or URL-encoded, is redacted from the 502 and from the log."""
    from urllib.parse import quote, quote_plus
    from xml.sax.saxutils import escape

    entry = ec2_cloud(0)
    entry["PASSWORD"] = password
    entry["EXTRA_PARAMS"]["token"] = "session-token-value"
    echoed = [escape(value) for value in (password, quote(password, safe=""), quote_plus(password))]
    with ScriptedCloud([echoing_error("AKIDLOOPBACKKEY", "session-token-value", *echoed)]) as cloud:
        entry["EXTRA_PARAMS"]["port"] = cloud.port
        response = get_nodes(make_app, entry)
    message = response.get_json()["message"]
    assert response.status_code == 502
    assert message.startswith("ec2: InternalError: cannot parse request [redacted] [redacted]")
    logged = caplog.text + message
    for secret in ("AKIDLOOPBACKKEY", "session-token-value", password, quote(password, safe="")):
        assert secret not in logged


# -- refusals for capacity or quota --------------------------------------------------------

EC2_IMAGE = (
    200,
    '<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    "<requestId>r</requestId><imagesSet><item><imageId>ami-1</imageId>"
    "<imageLocation>x</imageLocation><imageState>available</imageState><name>n</name>"
    "</item></imagesSet></DescribeImagesResponse>",
)


def ec2_error(status: int, code: str, message: str) -> tuple[int, str]:
    """An error of EC2's, as it answers one: (HTTP status, body)."""
    return (
        status,
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        "</Errors><RequestID>r-9</RequestID></Response>",
    )


def refused_creation(make_app, answer) -> Exception:
    """What starting an m5.large on an EC2 cloud answering ``answer`` to RunInstances raises
    through the cloud's boundary."""
    with ScriptedCloud([EC2_IMAGE, answer]) as scripted:
        app = make_app(CLOUD_FARM={"default": {"ENGINE": "dummy"}, "ec2": ec2_cloud(scripted.port)})
        with app.app_context(), pytest.raises(CloudError) as caught:
            nodes.start_node(clouds.get("ec2"), name="vm", image="ami-1", size="m5.large")
        assert "Action=RunInstances" in scripted.requests[-1]
    return caught.value


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (
            500,
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient m5.large capacity in the Availability Zone you "
            "requested (us-east-1a).",
        ),
        (
            400,
            "InstanceLimitExceeded",
            "You have requested more instances (21) than your current instance limit of 20 "
            "allows for the specified instance type.",
        ),
        (
            400,
            "VcpuLimitExceeded",
            "You have requested more vCPU capacity than your current vCPU limit of 32 allows "
            "for the instance bucket that the specified instance type belongs to.",
        ),
    ],
)
def test_ec2s_capacity_and_quota_codes_are_capacity_refusals(make_app, status, code, message):
    refusal = refused_creation(make_app, ec2_error(status, code, message))
    assert refusal.message == f"ec2: {code}: {message}"
    assert clouds.is_capacity_refusal(refusal)


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "InvalidAMIID.NotFound", "The image id '[ami-1]' does not exist"),
        (400, "Unsupported", "The requested configuration is currently not supported."),
        (500, "InternalError", "An internal error has occurred"),
        # A code of the list within another error's message is not the provider's code.
        (400, "InvalidParameterValue", "Value (InstanceLimitExceeded: 3) is not valid"),
    ],
)
def test_other_ec2_errors_are_not_capacity_refusals(make_app, status, code, message):
    refusal = refused_creation(make_app, ec2_error(status, code, message))
    assert refusal.message == f"ec2: {code}: {message}"
    assert not clouds.is_capacity_refusal(refusal)


def test_a_cloud_out_of_reach_is_no_capacity_refusal_whatever_its_name(make_app, refusing_port):
    """Only the provider's answer counts, never the dispatcher's own words about it."""
    farm = {"default": {"ENGINE": "dummy"}, "InstanceLimitExceeded": ec2_cloud(refusing_port)}
    app = make_app(CLOUD_FARM=farm)
    with app.app_context(), pytest.raises(CloudError) as caught:
        clouds.get("InstanceLimitExceeded").call_driver("list_nodes")
    assert caught.value.message == "InstanceLimitExceeded: Connection refused"
    assert not clouds.is_capacity_refusal(caught.value)
    assert not clouds.is_capacity_refusal(CloudError("ec2: InstanceLimitExceeded: x"))


def test_refusals_for_capacity_leave_the_circuit_closed(make_app):
    """EC2 answers InsufficientInstanceCapacity with a 500: the cloud is well, and its circuit
    does not count it as a failure (an InternalError would)."""
    capacity = ec2_error(500, "InsufficientInstanceCapacity", "No capacity for m5.large.")
    with ScriptedCloud([capacity]) as scripted:
        app = make_app(
            CLOUD_FARM={"default": {"ENGINE": "dummy"}, "ec2": ec2_cloud(scripted.port)},
            CIRCUIT_FAILURES=2,
        )
        with app.app_context():
            cloud = clouds.get("ec2")
            for _ in range(3):
                with pytest.raises(CloudError) as caught:
                    cloud.call_driver("list_nodes")
                assert caught.value.status == 502  # asked, refused: not the circuit's 503
            assert cloud.circuit.state() == "closed"
        assert len(scripted.requests) == 3
