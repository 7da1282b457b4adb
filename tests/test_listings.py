"""The v1 listing endpoints and the error envelope, on libcloud's Dummy driver."""

import conftest
import pytest
from conftest import NODE_KEYS, token_client


def assert_error(response, status, message):
    """The error envelope, its message beginning with ``message``."""
    return conftest.assert_error(response, status, message, prefix=True)


@pytest.mark.parametrize("method", ["get", "post"])
def test_root_answers_ok(anonymous, method):
    """GET and POST /api/v1/ answer {"status": "ok"}, without a token."""
    response = getattr(anonymous, method)("/api/v1/")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_root_post_with_malformed_json_is_400(client):
    """A body that is not JSON gets the original's message."""
    response = client.post("/api/v1/", data="{not json", content_type="application/json")
    assert_error(response, 400, "Malformed JSON stream")


def test_nodes_of_fake_driver_in_node_shape(client):
    """The Dummy driver's two nodes come back in the NODE shape."""
    response = client.get("/api/v1/nodes/fake_driver")
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert [node["name"] for node in body["nodes"]] == ["dummy-1", "dummy-2"]
    node = body["nodes"][0]
    assert set(node) == NODE_KEYS
    assert node["id"] == "1"
    assert node["state"] == "running"
    assert node["provider"] == "dummy"
    assert node["cloud_type"] == "Dummy Node Provider"
    assert node["public_ips"] == ["127.0.0.1"]
    assert node["extra"] == {"foo": "bar"}
    assert len(node["uuid"]) == 40


def test_without_cloud_the_default_cloud_answers(client):
    """No cloud in the URL means the cloud named default, with no redirect."""
    response = client.get("/api/v1/nodes")
    assert response.status_code == 200
    assert len(response.get_json()["nodes"]) == 2
    assert client.get("/api/v1/nodes/default").get_json() == response.get_json()


def test_images(client):
    """Images carry id, name, provider and cloud type."""
    images = client.get("/api/v1/images/fake_driver").get_json()["images"]
    assert images[0] == {
        "id": "1",
        "name": "Ubuntu 9.10",
        "provider": "dummy",
        "cloud_type": "Dummy Node Provider",
    }
    assert len(images) == 3


@pytest.mark.parametrize("action", ["flavors", "sizes"])
def test_flavors_and_sizes_are_one_listing(client, action):
    """flavors and sizes both answer the sizes under the key "flavors"."""
    body = client.get(f"/api/v1/{action}/fake_driver").get_json()
    assert body["status"] == "ok"
    assert body["flavors"][0] == {
        "id": "1",
        "name": "Small",
        "ram": 128,
        "cpu": 0,
        "disk": 4,
        "provider": "dummy",
        "cloud_type": "Dummy Node Provider",
    }
    assert [flavor["id"] for flavor in body["flavors"]] == ["1", "2", "3", "4"]


def test_tenants_empty_where_the_provider_has_none(client):
    """The Dummy driver has no identity service: an empty list, not a made-up tenant."""
    assert client.get("/api/v1/tenants/fake_driver").get_json() == {
        "status": "ok",
        "tenants": [],
    }


def test_served_clouds_default_first(make_app):
    """/cloud lists every configured cloud with its engine, default first."""
    farm = {
        "fake_driver": {"ENGINE": "dummy"},
        "default": {
            "ENGINE": "openstack",
            "USER": "demo",
            "PASSWORD": "secret",
            "EXTRA_PARAMS": {"ex_force_auth_url": "http://keystone.example.org:5000/v2.0"},
        },
    }
    body = token_client(make_app(CLOUD_FARM=farm)).get("/api/v1/cloud").get_json()
    assert body == {
        "status": "ok",
        "served_cloud": [
            {"name": "default", "type": "openstack", "host": "keystone.example.org"},
            {"name": "fake_driver", "type": "dummy", "host": None},
        ],
    }


def test_v2_listings_answer_as_v1(client):
    """The v2 template serves the same listings."""
    assert (
        client.get("/api/v2/nodes/fake_driver").get_json()
        == client.get("/api/v1/nodes/fake_driver").get_json()
    )


def test_unknown_page_is_404(client):
    """A path nothing serves gets the original's 404 envelope."""
    body = assert_error(client.get("/api/v1/vm/no/such/page"), 404, "Page not found")
    assert body["status_short_message"] == "Not Found"
    assert_error(client.get("/nowhere"), 404, "Page not found")


def test_unknown_action_is_400(client):
    """An action that is no listing gets "Unrecognized action found"."""
    body = assert_error(client.get("/api/v1/volcanoes"), 400, "Unrecognized action found")
    assert "volcanoes" in body["message"]
    assert_error(client.get("/api/v2/volcanoes/fake_driver"), 400, "Unrecognized action found")


def test_unknown_cloud_is_404_naming_it(client):
    """A cloud that is not in the pool is a 404 that names it."""
    body = assert_error(client.get("/api/v1/nodes/atlantis"), 404, "Unknown cloud")
    assert "atlantis" in body["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("put", "/api/v1/cloud"), ("delete", "/api/v1/nodes/fake_driver"), ("patch", "/api/v1/")],
)
def test_method_a_view_does_not_implement_is_501(client, method, path):
    """Any method a view lacks answers 501 "Not implemented", as the original."""
    body = assert_error(getattr(client, method)(path), 501, "Not implemented")
    assert body["status_short_message"] == "Not Implemented"


def test_state_of_the_dummy_pool_lasts_across_requests(app, client):
    """One driver per cloud per process: what a request changes, the next one sees."""
    from dispatcher import clouds

    with app.app_context():
        driver = clouds.get("fake_driver").driver
        driver.create_node(name="kept", size=driver.list_sizes()[0], image=driver.list_images()[0])
    names = [node["name"] for node in client.get("/api/v1/nodes/fake_driver").get_json()["nodes"]]
    assert names == ["dummy-1", "dummy-2", "dummy-3"]


# Every answer is the envelope: no redirect page, no empty OPTIONS page.


@pytest.mark.parametrize("path", ["/api/v1", "/api/v1//"])
def test_the_root_without_or_with_a_doubled_slash_answers_ok(anonymous, path):
    """No 308 to an HTML page: the root answers where a client's slash is off."""
    response = anonymous.get(path)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/nodes//fake_driver", 404),
        ("/api/v1/nodes/fake%2Fdriver", 404),
        ("/api/v1/nodes/fake_driver%2F", 200),
        ("/api/v1/vm", 404),
    ],
)
def test_odd_slashes_are_answered_in_the_envelope(client, path, status):
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert response.get_json()["status"] == ("ok" if status == 200 else "error")


@pytest.mark.parametrize(
    "path", ["/api/v1/vm/stop", "/api/v1/vm/stop/fake_driver", "/api/v1/storage/attach"]
)
def test_get_of_a_url_that_only_changes_is_501_not_a_listing(client, path):
    """GET /vm/stop is the PUT-only URL it is (501), not the listing `vm` of cloud `stop`."""
    conftest.assert_error(client.get(path), 501, "Not implemented")


def test_an_unknown_listing_is_still_400(client):
    assert_error(client.get("/api/v1/gadgets/fake_driver"), 400, "Unrecognized action found")


@pytest.mark.parametrize(
    "path", ["/api/v1/nodes/fake_driver", "/api/v1/vm/stop", "/api/v1/", "/metrics"]
)
def test_options_is_a_method_like_any_other_the_views_lack(anonymous, path):
    """No CORS, so no automatic OPTIONS answer (an empty HTML page, even without a token)."""
    conftest.assert_error(anonymous.options(path), 501, "Not implemented")


def test_the_docs_page_answers_with_a_trailing_slash(anonymous):
    response = anonymous.get("/api/v1/docs/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
