"""The listings over libcloud's real OpenStack driver, answered by libcloud's own test suite.

libcloud ships its MockHttp classes and JSON fixtures inside the installed package:
every OpenStack connection is pointed at them, so the driver, its Keystone client
and its parsing all run for real, with no network at all.
"""

import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import socket
import sys
from pathlib import Path

import libcloud.test
import pytest
from conftest import NODE_KEYS, token_client
from libcloud.common.openstack import OpenStackBaseConnection
from libcloud.compute.drivers.openstack import OpenStackComputeConnection
from libcloud.utils.py3 import httplib

from dispatcher import clouds
from dispatcher.clouds import nodes
from dispatcher.errors import CloudError


def _libcloud_test_module(name: str):
    """Import one of libcloud's test modules, which the package installs but cannot import alone."""
    # They import libcloud.test.secrets, shipped only as secrets.py-dist (copied
    # by hand in libcloud's own checkout): load that file under the module's name.
    if "libcloud.test.secrets" not in sys.modules:
        try:
            importlib.import_module("libcloud.test.secrets")
        except ImportError:
            dist = Path(libcloud.test.__file__).with_name("secrets.py-dist")
            loader = importlib.machinery.SourceFileLoader("libcloud.test.secrets", str(dist))
            module = importlib.util.module_from_spec(
                importlib.util.spec_from_loader(loader.name, loader)
            )
            loader.exec_module(module)
            sys.modules[loader.name] = module
    return importlib.import_module(name)


compute_mocks = _libcloud_test_module("libcloud.test.compute.test_openstack")
identity_mocks = _libcloud_test_module("libcloud.test.common.test_openstack_identity")
fixtures = _libcloud_test_module("libcloud.test.file_fixtures")

AUTH_URL = "https://auth.api.example.com"
KEYSTONE_V2 = {
    "ENGINE": "openstack",
    "USER": "admin",
    "PASSWORD": "fixture-password",
    "EXTRA_PARAMS": {
        "ex_force_auth_url": AUTH_URL,
        "ex_force_auth_version": "2.0_password",
        "ex_tenant_name": "demo",
    },
}
# libcloud's Keystone v3 mock refuses a token unless asked for exactly this
# domain and tenant domain (its OpenStack_AuthVersions_Tests use the same values).
KEYSTONE_V3 = {
    "ENGINE": "openstack",
    "USER": "admin",
    "PASSWORD": "fixture-password",
    "EXTRA_PARAMS": {
        "ex_force_auth_url": AUTH_URL,
        "ex_force_auth_version": "3.x_password",
        "ex_tenant_name": "tenant-name",
        "ex_domain_name": "test_domain",
        "ex_tenant_domain_id": "test_tenant_domain_id",
        "ex_force_service_region": "regionOne",
    },
}

# Paths the driver calls, as the service catalogs of the auth fixtures make them:
# compute of openstack/_v2_0__auth.json and of openstack/_v3__auth.json.
V2_TOKENS = "/v2.0/tokens"
V3_TOKENS = "/v3/auth/tokens"
V2_SERVERS = "/v2/1337/servers/detail"
V3_SERVERS = "/v2/9c4693dce56b493b9b83197d900f7fba/servers/detail"
V2_TENANTS = "/v2.0/tenants"
# The user of openstack/_v3__auth.json's token.
V3_USER_ID = "55fba80f022b4855acfc700ae13b2b24"
V3_USER_PROJECTS = f"/v3/users/{V3_USER_ID}/projects"

# What nova and keystonemiddleware answer with a 404, a 500 and a 401.
ERROR_BODIES = {
    404: {"itemNotFound": {"code": 404, "message": "The resource could not be found."}},
    500: {
        "computeFault": {
            "code": 500,
            "message": "The server has either erred or is incapable of performing the request.",
        }
    },
    401: {
        "error": {
            "code": 401,
            "title": "Unauthorized",
            "message": "The request you have made requires authentication.",
        }
    },
}


# The server that POST /servers creates (openstack_v1_1/_servers_create.json) and
# its paths; GET of it answers _servers_26f7fbee_8ce1_4c28_887a_bfe8e4bb10fe.json.
CREATED_ID = "26f7fbee-8ce1-4c28-887a-bfe8e4bb10fe"
CREATED = f"/v2/1337/servers/{CREATED_ID}"
CREATED_ACTION = f"{CREATED}/action"
V2_CREATE = "/v2/1337/servers"
V2_FLAVORS = "/v2/1337/flavors/detail"
V2_IMAGES = "/v2/1337/images/detail"
V2_IMAGE_13 = "/v2/1337/images/13"
# Image 13 (_images_13.json) and flavor 1 (_flavors_detail.json) are in the fixtures.
START_VM = {
    "name": "web-1",
    "image": "13",
    "size": "1",
    "keyname": "my-key",
    "metadata": {"team": "a"},
}


class OpenStackCloud(compute_mocks.OpenStack_2_0_MockHttp):
    """libcloud's compute and Keystone mocks behind one host, logging every request.

    ``failures`` maps a path to the statuses it answers (or (status, body) pairs), one per
    request, before libcloud's fixtures answer it. A path the mocks have no handler for answers
    404, as nova and keystone do for an id they do not know. ``security_groups``
    are nova's groups, those of openstack_v1_1/_os_security_groups.json at first:
    what a test creates or deletes shows in the next listing, as in nova.
    """

    __test__ = False  # a unittest.TestCase by inheritance, not a test
    type = None
    requests: list = []
    failures: dict = {}
    security_groups: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keystone_v2 = identity_mocks.OpenStackIdentity_2_0_MockHttp(*args, **kwargs)
        self.keystone_v3 = identity_mocks.OpenStackIdentity_3_0_MockHttp(*args, **kwargs)
        self.v3_fixtures = fixtures.ComputeFileFixtures("openstack_identity/v3")
        # The 2.0 mock copies every 1.1 handler onto the instance: let ours win.
        for name in set(vars(self)) & set(vars(OpenStackCloud)):
            del self.__dict__[name]

    def _get_request(self, method, url, body=None, headers=None):
        path = url.split("?")[0].rstrip("/")
        self.requests.append((method, path, body, dict(headers or {})))
        pending = self.failures.get(path)
        handler = self._get_method_name(self.type, self.use_param, {}, path).replace("%", "_")
        if pending or not hasattr(self, handler):
            status = pending.pop(0) if pending else httplib.NOT_FOUND
            status, answer = status if isinstance(status, tuple) else (status, ERROR_BODIES[status])
            body = json.dumps(answer)
            return status, body, self.json_content_headers, httplib.responses[status]
        return super()._get_request(method, url, body, headers)

    def _v2_1337_servers_26f7fbee_8ce1_4c28_887a_bfe8e4bb10fe(self, method, url, body, headers):
        # libcloud's handler answers GET only; nova deletes a server with a 204.
        if method == "DELETE":
            return httplib.NO_CONTENT, "", {}, httplib.responses[httplib.NO_CONTENT]
        return super()._v1_1_slug_servers_26f7fbee_8ce1_4c28_887a_bfe8e4bb10fe(
            method, url, body, headers
        )

    def _v2_1337_servers_26f7fbee_8ce1_4c28_887a_bfe8e4bb10fe_action(
        self, method, url, body, headers
    ):
        # Nova accepts reboot, os-start and os-stop with a 202 and no body.
        assert method == "POST" and set(json.loads(body)) <= {"reboot", "os-start", "os-stop"}
        return httplib.ACCEPTED, "", {}, httplib.responses[httplib.ACCEPTED]

    def _v2_1337_servers_12065(self, method, url, body, headers):
        # libcloud's handler answers DELETE only; nova's GET answers the server as listed.
        if method == "GET":
            servers = self._fixture("_servers_detail.json")["servers"]
            return self._json({"server": next(s for s in servers if s["id"] == 12065)})
        return super()._v1_1_slug_servers_12065(method, url, body, headers)

    def _v2_1337_os_security_groups(self, method, url, body, headers):
        # libcloud's handler answers the same two fixtures whatever was created before.
        if method == "GET":
            return self._json({"security_groups": self.security_groups})
        assert method == "POST"
        group = self._fixture("_os_security_groups_create.json")["security_group"]
        group.update(json.loads(body)["security_group"])
        self.security_groups.append(group)
        return self._json({"security_group": group})

    def _v2_1337_os_security_group_rules(self, method, url, body, headers):
        # Nova answers the rule it made of the request, in the fixture's shape.
        assert method == "POST"
        sent = json.loads(body)["security_group_rule"]
        parent = next(g for g in self.security_groups if g["id"] == sent["parent_group_id"])
        rule = self._fixture("_os_security_group_rules_create.json")["security_group_rule"]
        rule.update(
            id=1 + max((r["id"] for g in self.security_groups for r in g["rules"]), default=0),
            parent_group_id=parent["id"],
            ip_protocol=sent["ip_protocol"],
            from_port=sent["from_port"],
            to_port=sent["to_port"],
            ip_range={"cidr": sent["cidr"]},
        )
        parent["rules"].append(rule)
        return self._json({"security_group_rule": rule})

    def _v2_1337_os_security_group_rules_1(self, method, url, body, headers):
        return self._delete_security_group_rule(method, 1)

    def _v2_1337_os_security_group_rules_2(self, method, url, body, headers):
        return self._delete_security_group_rule(method, 2)

    def _delete_security_group_rule(self, method, rule_id):
        # Nova deletes a rule with a 202 (libcloud's mock answers 204), an unknown one 404s.
        assert method == "DELETE"
        groups = [g for g in self.security_groups if any(r["id"] == rule_id for r in g["rules"])]
        if not groups:
            return self._json(ERROR_BODIES[404], httplib.NOT_FOUND)
        for group in groups:
            group["rules"] = [r for r in group["rules"] if r["id"] != rule_id]
        return httplib.ACCEPTED, "", {}, httplib.responses[httplib.ACCEPTED]

    def _v2_1337_os_security_groups_4(self, method, url, body, headers):
        # Nova deletes a group with a 202 (the fixture's "ftp").
        assert method == "DELETE"
        self.security_groups[:] = [g for g in self.security_groups if g["id"] != 4]
        return httplib.ACCEPTED, "", {}, httplib.responses[httplib.ACCEPTED]

    def _fixture(self, name: str) -> dict:
        return json.loads(self.fixtures.load(name))

    def _json(self, answer, status=httplib.OK):
        return status, json.dumps(answer), self.json_content_headers, httplib.responses[status]

    def _v2_0_tenants(self, method, url, body, headers):
        return self.keystone_v2._v2_0_tenants(method, url, body, headers)

    def _v3_auth_tokens(self, method, url, body, headers):
        return self.keystone_v3._v3_auth_tokens(method, url, body, headers)

    def _v2_9c4693dce56b493b9b83197d900f7fba_servers_detail(self, method, url, body, headers):
        return self._v2_1337_servers_detail(method, url, body, headers)

    def _v3_users_55fba80f022b4855acfc700ae13b2b24_projects(self, method, url, body, headers):
        # libcloud's own handler answers only user "a", with an empty list
        # (v3_users_a_projects.json); the token's user gets the v3 project fixture.
        body = self.v3_fixtures.load("v3_projects.json")
        return httplib.OK, body, self.json_content_headers, httplib.responses[httplib.OK]

    @classmethod
    def count(cls, method: str, path: str) -> int:
        """How many ``method`` requests to ``path`` the cloud has seen."""
        return sum(1 for seen in cls.requests if seen[:2] == (method, path))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any socket connection fails the test: libcloud's mocks answer everything."""

    def refuse(sock, address):
        raise AssertionError(f"network access to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def openstack(monkeypatch):
    """A fresh mock cloud that every libcloud OpenStack connection talks to in this test."""
    groups = json.loads(OpenStackCloud.fixtures.load("_os_security_groups.json"))
    cloud = type(
        "Cloud",
        (OpenStackCloud,),
        {"requests": [], "failures": {}, "security_groups": groups["security_groups"]},
    )
    # Every compute, image, network and identity connection inherits conn_class
    # from OpenStackBaseConnection (identity ones copy their parent's).
    monkeypatch.setattr(OpenStackBaseConnection, "conn_class", cloud)
    return cloud


@pytest.fixture
def keystone_v3(monkeypatch):
    """The 3.x_password cloud, its compute endpoint found by type and region alone."""
    # The catalog of _v3__auth.json names no service, so the driver's "nova" would
    # match nothing; libcloud's own tests patch get_endpoint instead.
    monkeypatch.setattr(OpenStackComputeConnection, "service_name", None)
    return KEYSTONE_V3


@pytest.fixture
def make_client(make_app, openstack):
    """A client with a token, of an app whose default cloud is ``cloud``; config on top."""

    def make(cloud=KEYSTONE_V2, **overrides):
        config = {"CLOUD_FARM": {"default": cloud}, "MAX_ITERATIONS": 3, **overrides}
        return token_client(make_app(**config))

    return make


@pytest.fixture
def client(make_client):
    """A test client of the Keystone v2 cloud: every test's one way in."""
    return make_client()


def test_nodes_lists_fixture_servers(client):
    """GET /nodes answers the servers of openstack_v1_1/_servers_detail.json as NODEs."""
    response = client.get("/api/v1/nodes")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    nodes = body["nodes"]
    assert all(set(node) == NODE_KEYS for node in nodes)
    assert [(n["id"], n["name"], n["state"]) for n in nodes] == [
        ("12065", "lc-test-2", "pending"),
        ("12064", "lc-test", "running"),
    ]
    first = nodes[0]
    assert first["uuid"] == "6511907911796ec0b9c19460a097badc6b89f40d"
    assert (first["provider"], first["cloud_type"]) == ("openstack", "OpenStack")
    assert first["public_ips"][0] == "50.57.94.35"
    assert first["private_ips"][0] == "10.182.64.34"
    assert first["extra"]["tenantId"] == "rs-reach-project"
    assert first["extra"]["flavorId"] == "2"
    assert json.loads(json.dumps(first["extra"])) == first["extra"]


def test_nodes_of_named_cloud(client):
    """GET /nodes/default answers what GET /nodes does."""
    assert client.get("/api/v1/nodes/default").get_json() == client.get("/api/v1/nodes").get_json()


def test_nodes_over_keystone_v3(make_client, openstack, keystone_v3):
    """A 3.x_password cloud authenticates at /v3/auth/tokens and lists the same servers."""
    response = make_client(keystone_v3).get("/api/v1/nodes")
    assert response.status_code == 200
    assert [n["id"] for n in response.get_json()["nodes"]] == ["12065", "12064"]
    assert openstack.count("GET", V3_SERVERS) == 1
    assert openstack.count("POST", V3_TOKENS) == 1


def test_images_lists_fixture_images(client):
    """GET /images answers the 13 images of openstack_v1_1/_images_detail.json."""
    response = client.get("/api/v1/images")
    assert response.status_code == 200
    images = response.get_json()["images"]
    assert len(images) == 13
    assert images[0] == {
        "id": "13",
        "name": "Windows 2008 SP2 x86 (B24)",
        "provider": "openstack",
        "cloud_type": "OpenStack",
    }
    assert {"id": "4", "name": "Debian Squeeze (6.0)"}.items() <= images[9].items()


def test_images_on_compute_api_2(make_client, openstack):
    """With api_version 2.0 the driver lists glance v2's images (_images_v2*.json, two pages)."""
    cloud = {**KEYSTONE_V2, "EXTRA_PARAMS": {**KEYSTONE_V2["EXTRA_PARAMS"], "api_version": "2.0"}}
    response = make_client(cloud).get("/api/v1/images")
    assert response.status_code == 200
    images = response.get_json()["images"]
    assert [i["id"] for i in images] == [
        "f24a3c1b-d52a-4116-91da-25b3eee8f55e",
        "4bd743f8-7e7d-4568-8f31-b3f06b90e70a",
        "f24a3c1b-d52a-4116-91da-25b3eee8f55c",
    ]
    assert {i["name"] for i in images} == {"hypernode"}
    assert openstack.count("GET", "/v2/1337/v2/images") == 2


def test_flavors_lists_fixture_flavors(client):
    """GET /flavors answers openstack_v1_1/_flavors_detail.json, cpu being the vcpus."""
    response = client.get("/api/v1/flavors")
    assert response.status_code == 200
    flavors = response.get_json()["flavors"]
    assert [f["id"] for f in flavors] == ["7", "3", "1", "4", "8", "5", "2", "6"]
    assert flavors[0] == {
        "id": "7",
        "name": "15.5GB slice",
        "ram": 16384,
        "cpu": 8,
        "disk": 620,
        "provider": "openstack",
        "cloud_type": "OpenStack",
    }
    assert (flavors[3]["name"], flavors[3]["cpu"]) == ("2GB slice", 2)


def test_sizes_answers_as_flavors(client):
    """GET /sizes gives the answer of GET /flavors, under the key "flavors"."""
    sizes = client.get("/api/v1/sizes")
    assert sizes.status_code == 200
    assert sizes.get_json() == client.get("/api/v1/flavors").get_json()


def test_tenants_on_keystone_v2(client, openstack):
    """GET /tenants on 2.0_password lists openstack_identity/v2/v2_0_tenants.json."""
    response = client.get("/api/v1/tenants")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "tenants": [
            {"id": "a", "name": "test", "provider": "openstack", "cloud_type": "OpenStack"},
            {"id": "b", "name": "admin", "provider": "openstack", "cloud_type": "OpenStack"},
        ],
    }
    tenants = [seen for seen in openstack.requests if seen[1] == V2_TENANTS]
    assert len(tenants) == 1
    assert tenants[0][3]["X-Auth-Token"] == "aaaaaaaaaaaa-bbb-cccccccccccccc"


def test_tenants_on_keystone_v2_authenticate_with_password(client, openstack):
    """The token behind GET /tenants is asked for with the password, not as an API key."""
    assert client.get("/api/v1/tenants").status_code == 200
    (auth,) = [seen for seen in openstack.requests if seen[1] == V2_TOKENS]
    assert json.loads(auth[2])["auth"] == {
        "passwordCredentials": {"username": "admin", "password": "fixture-password"},
        "tenantName": "demo",
    }


def test_tenants_then_nodes_share_one_token(client, openstack):
    """After GET /tenants the same driver lists nodes, with no second authentication."""
    assert client.get("/api/v1/tenants").status_code == 200
    response = client.get("/api/v1/nodes")
    assert response.status_code == 200
    assert len(response.get_json()["nodes"]) == 2
    assert openstack.count("POST", V2_TOKENS) == 1


def test_tenants_on_keystone_v3(make_client, openstack, keystone_v3):
    """GET /tenants on 3.x_password lists the token user's projects (v3_projects.json)."""
    response = make_client(keystone_v3).get("/api/v1/tenants")
    assert response.status_code == 200
    tenants = response.get_json()["tenants"]
    assert [(t["id"], t["name"]) for t in tenants] == [
        ("a", "divvy"),
        ("b", "admin"),
        ("c", "first-tenant"),
        ("d", "service"),
    ]
    assert all((t["provider"], t["cloud_type"]) == ("openstack", "OpenStack") for t in tenants)
    assert openstack.count("GET", V3_USER_PROJECTS) == 1


def test_tenants_with_a_preset_token_not_supported(make_client, openstack):
    """With ex_force_auth_token the identity service is never asked: 501, not a traceback."""
    preset = {
        **KEYSTONE_V2,
        "EXTRA_PARAMS": {
            **KEYSTONE_V2["EXTRA_PARAMS"],
            "ex_force_auth_token": "preset-token",
            "ex_force_base_url": "https://compute.example.com/v2/1337",
        },
    }
    response = make_client(preset).get("/api/v1/tenants")
    assert response.status_code == 501
    assert response.get_json()["message"] == "default: the OpenStack driver has no list_tenants"
    assert openstack.requests == []


def test_provider_error_is_502(client, openstack):
    """A 500 from nova answers 502 in the error envelope, with nova's message."""
    openstack.failures[V2_SERVERS] = [500]
    response = client.get("/api/v1/nodes")
    assert response.status_code == 502
    body = response.get_json()
    assert {k: body[k] for k in ("status", "status_code", "status_short_message")} == {
        "status": "error",
        "status_code": 502,
        "status_short_message": "Bad Gateway",
    }
    assert body["message"].startswith("default: ")
    assert "The server has either erred" in body["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    assert openstack.count("GET", V2_SERVERS) == 1


def test_identity_error_on_tenants_is_502(client, openstack):
    """A 500 from Keystone on the tenant list answers 502, not a bare 500."""
    openstack.failures[V2_TENANTS] = [500]
    response = client.get("/api/v1/tenants")
    assert response.status_code == 502
    assert response.get_json()["status"] == "error"
    assert openstack.count("GET", V2_TENANTS) == 1


def test_stale_token_rebuilds_driver_and_retries(client, openstack):
    """A 401 from nova rebuilds the driver: a second token, a second listing, 200."""
    openstack.failures[V2_SERVERS] = [401]
    response = client.get("/api/v1/nodes")
    assert response.status_code == 200
    assert len(response.get_json()["nodes"]) == 2
    assert openstack.count("POST", V2_TOKENS) == 2
    assert openstack.count("GET", V2_SERVERS) == 2


def test_stale_token_on_tenants_rebuilds_driver_and_retries(client, openstack):
    """A 401 from Keystone on the tenant list rebuilds the driver and lists them."""
    openstack.failures[V2_TENANTS] = [401]
    response = client.get("/api/v1/tenants")
    assert response.status_code == 200
    assert [t["id"] for t in response.get_json()["tenants"]] == ["a", "b"]
    assert openstack.count("POST", V2_TOKENS) == 2
    assert openstack.count("GET", V2_TENANTS) == 2


def test_token_refused_every_time_gives_up(make_client, openstack):
    """A 401 on every try stops after MAX_ITERATIONS drivers with a 502."""
    openstack.failures[V2_SERVERS] = [401] * 5
    response = make_client(MAX_ITERATIONS=3).get("/api/v1/nodes")
    assert response.status_code == 502
    assert response.get_json()["message"] == "default: credentials rejected"
    assert openstack.count("POST", V2_TOKENS) == 3
    assert openstack.count("GET", V2_SERVERS) == 3


def test_keystone_refusing_credentials_gives_up(make_client, openstack):
    """Keystone v3 refusing the credentials (wrong domain) is tried MAX_ITERATIONS times."""
    wrong_domain = {
        **KEYSTONE_V3,
        "EXTRA_PARAMS": {**KEYSTONE_V3["EXTRA_PARAMS"], "ex_domain_name": "other_domain"},
    }
    response = make_client(wrong_domain, MAX_ITERATIONS=2).get("/api/v1/nodes")
    assert response.status_code == 502
    assert response.get_json()["message"] == "default: credentials rejected"
    assert openstack.count("POST", V3_TOKENS) == 2
    assert openstack.count("GET", V3_SERVERS) == 0


def upstream(cloud) -> list:
    """The (method, path) of each request the cloud saw since the last call, which it forgets."""
    seen = [request[:2] for request in cloud.requests]
    cloud.requests.clear()
    return seen


def test_start_vm_sends_key_and_metadata(client, openstack):
    """A start: one image by id, one flavor listing, one POST /servers with key and metadata."""
    response = client.post("/api/v1/vm/start", json=START_VM)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    node = body["nodes"]
    assert set(node) == NODE_KEYS
    # POST /servers answers only the id; the node is GET /servers/<id>'s fixture.
    assert (node["id"], node["name"], node["state"]) == (CREATED_ID, "racktest", "pending")
    assert (node["provider"], node["cloud_type"]) == ("openstack", "OpenStack")
    assert node["extra"]["flavorId"] == "1"
    assert node["extra"]["password"] == "racktestvJq7d3"  # the adminPass of the POST's answer
    (create,) = [seen for seen in openstack.requests if seen[:2] == ("POST", V2_CREATE)]
    assert json.loads(create[2]) == {
        "server": {
            "name": "web-1",
            "imageRef": "13",
            "flavorRef": "1",
            "key_name": "my-key",
            "metadata": {"team": "a"},
        }
    }
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", V2_IMAGE_13),
        ("GET", V2_FLAVORS),
        ("POST", V2_CREATE),
        ("GET", CREATED),
    ]


def test_second_start_uses_cached_image_and_flavors(client, openstack):
    """A second start asks nova for no image and no flavor: one POST and its server."""
    assert client.post("/api/v1/vm/start", json=START_VM).status_code == 200
    upstream(openstack)
    response = client.post("/api/v1/vm/start", json={**START_VM, "name": "web-2"})
    assert response.status_code == 200
    assert response.get_json()["nodes"]["id"] == CREATED_ID
    assert upstream(openstack) == [("POST", V2_CREATE), ("GET", CREATED)]


def test_vm_lifecycle(client, openstack):
    """Start, details, reboot, power off, power on and stop the VM, each with its own requests."""
    started = client.post("/api/v1/vm/start", json=START_VM)
    assert started.status_code == 200
    node = started.get_json()["nodes"]
    assert openstack.count("GET", V2_IMAGE_13) == 1
    assert openstack.count("GET", V2_IMAGES) == 0
    assert openstack.count("GET", V2_FLAVORS) == 1
    assert openstack.count("POST", V2_CREATE) == 1
    upstream(openstack)

    details = client.get(f"/api/v1/nodes/default/{CREATED_ID}")
    assert details.status_code == 200
    # The same fixture, less the adminPass that only the create answers.
    assert details.get_json() == {
        "status": "ok",
        "node": {**node, "extra": {**node["extra"], "password": None}},
    }
    assert upstream(openstack) == [("GET", CREATED)]

    for action, sent, result in [
        ("reboot", {"reboot": {"type": "HARD"}}, "rebooted"),
        ("poweroff", {"os-stop": None}, "powered off"),
        ("poweron", {"os-start": None}, "powered on"),
    ]:
        response = client.put(f"/api/v1/vm/action/{action}", json={"node": CREATED_ID})
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok", "result": f"Node {CREATED_ID} {result}"}
        assert json.loads(openstack.requests[-1][2]) == sent
        assert upstream(openstack) == [("GET", CREATED), ("POST", CREATED_ACTION)]

    stopped = client.put("/api/v1/vm/stop", json={"node": CREATED_ID})
    assert stopped.status_code == 200
    assert stopped.get_json() == {"status": "ok", "result": f"Node {CREATED_ID} deleted"}
    assert upstream(openstack) == [("GET", CREATED), ("DELETE", CREATED)]


def test_power_actions_on_named_cloud(client, openstack):
    """The power actions take the cloud in the URL too, and a fixture server by id."""
    response = client.put("/api/v1/vm/action/poweroff/default", json={"node": "12064"})
    assert response.get_json() == {"status": "ok", "result": "Node 12064 powered off"}
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", "/v2/1337/servers/12064"),
        ("POST", "/v2/1337/servers/12064/action"),
    ]


def test_unknown_image_is_400_naming_it(client, openstack):
    """An image id nova answers 404 for: 400 naming it, after one lookup and no listing."""
    response = client.post("/api/v1/vm/start", json={**START_VM, "image": "99"})
    assert response.status_code == 400
    body = response.get_json()
    assert (body["status"], body["message"]) == ("error", "no useful image id here: 99")
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", "/v2/1337/images/99")]


def test_image_gone_from_nova_is_400(client, openstack):
    """A 404 injected on a fixture image is the same 400: the image is not cached as found."""
    openstack.failures[V2_IMAGE_13] = [404]
    response = client.post("/api/v1/vm/start", json=START_VM)
    assert response.status_code == 400
    assert response.get_json()["message"] == "no useful image id here: 13"
    assert client.post("/api/v1/vm/start", json=START_VM).status_code == 200
    assert openstack.count("GET", V2_IMAGE_13) == 2
    assert openstack.count("POST", V2_CREATE) == 1


def test_unknown_size_is_400_naming_it(client, openstack):
    """A flavor id not in the flavor listing: 400 naming it, and no server is created."""
    response = client.post("/api/v1/vm/start", json={**START_VM, "size": "99"})
    assert response.status_code == 400
    assert response.get_json()["message"] == "no useful size id here: 99"
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", V2_IMAGE_13),
        ("GET", V2_FLAVORS),
    ]


def test_location_is_400_on_openstack(client, openstack):
    """OpenStack's create_node takes no location: 400 before any request to the cloud."""
    response = client.post("/api/v1/vm/start", json={**START_VM, "location": "az-1"})
    assert response.status_code == 400
    assert response.get_json()["message"] == "location: the OpenStack driver does not take it"
    assert openstack.requests == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/vm/stop"),
        ("put", "/api/v1/vm/action/reboot"),
        ("put", "/api/v1/vm/action/poweroff"),
        ("get", "/api/v1/nodes/default/does-not-exist"),
    ],
)
def test_unknown_node_is_404(client, openstack, method, path):
    """GET /servers/<id> answering 404 is a 404, with nothing listed, deleted or acted on."""
    response = getattr(client, method)(path, json={"node": "does-not-exist"})
    assert response.status_code == 404
    body = response.get_json()
    assert (body["status"], body["status_code"]) == ("error", 404)
    assert body["message"] == "no useful node id here: does-not-exist"
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", "/v2/1337/servers/does-not-exist")]


def test_provider_error_during_create_is_502(client, openstack):
    """A 500 on POST /servers is a 502 envelope with nova's message; the create is not retried."""
    openstack.failures[V2_CREATE] = [500]
    response = client.post("/api/v1/vm/start", json=START_VM)
    assert response.status_code == 502
    body = response.get_json()
    assert {k: body[k] for k in ("status", "status_code", "status_short_message")} == {
        "status": "error",
        "status_code": 502,
        "status_short_message": "Bad Gateway",
    }
    assert body["message"] == (
        "default: 500 Internal Server Error "
        "The server has either erred or is incapable of performing the request."
    )
    assert "Traceback" not in response.get_data(as_text=True)
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", V2_IMAGE_13),
        ("GET", V2_FLAVORS),
        ("POST", V2_CREATE),
    ]


def refused_start(client, openstack, status: int, answer: dict) -> CloudError:
    """What starting START_VM raises through the cloud's boundary when POST /servers answers
    ``status`` with ``answer``."""
    openstack.failures[V2_CREATE] = [(status, answer)]
    with client.application.app_context(), pytest.raises(CloudError) as caught:
        nodes.start_node(
            clouds.get("default"), START_VM["name"], START_VM["image"], START_VM["size"]
        )
    assert upstream(openstack)[-1] == ("POST", V2_CREATE)
    return caught.value


@pytest.mark.parametrize(
    ("status", "answer", "said"),
    [
        (
            403,
            {
                "forbidden": {
                    "code": 403,
                    "message": "Quota exceeded for cores: Requested 8, but already used 16 of "
                    "20 cores",
                }
            },
            "403 Forbidden Quota exceeded for cores",
        ),
        (
            413,
            {
                "overLimit": {
                    "code": 413,
                    "message": "Quota exceeded for instances: Requested 1, but already used 10 "
                    "of 10 instances",
                    "retryAfter": "0",
                }
            },
            "413 Request Entity Too Large Quota exceeded for instances",
        ),
        (
            500,
            {
                "computeFault": {
                    "code": 500,
                    "message": "No valid host was found. There are not enough hosts available.",
                }
            },
            "500 Internal Server Error No valid host was found.",
        ),
    ],
)
def test_novas_quota_exceeded_and_no_valid_host_are_capacity_refusals(
    client, openstack, status, answer, said
):
    refusal = refused_start(client, openstack, status, answer)
    assert refusal.message.startswith(f"default: {said}"), refusal.message
    assert clouds.is_capacity_refusal(refusal)


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (
            403,
            {
                "forbidden": {
                    "code": 403,
                    "message": "Policy doesn't allow os_compute_api:servers:create to be "
                    "performed.",
                }
            },
        ),
        (400, {"badRequest": {"code": 400, "message": "Invalid flavorRef provided."}}),
        (500, ERROR_BODIES[500]),
    ],
)
def test_other_nova_errors_are_not_capacity_refusals(client, openstack, status, answer):
    refusal = refused_start(client, openstack, status, answer)
    assert refusal.message.startswith(f"default: {status} "), refusal.message
    assert not clouds.is_capacity_refusal(refusal)


def test_stop_by_hostname_lists_servers_and_filters_by_name(client, openstack):
    """By hostname, OpenStack lists every server (no name filter) and deletes the match."""
    response = client.put("/api/v1/vm/stop", json={"hostname": "lc-test"})
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "result": "Node 12064 deleted"}
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", V2_SERVERS),
        ("DELETE", "/v2/1337/servers/12064"),
    ]


def test_stop_by_unknown_hostname_is_404(client, openstack):
    """A hostname no server has: 404 after one listing, nothing deleted."""
    response = client.put("/api/v1/vm/stop", json={"hostname": "nobody"})
    assert response.status_code == 404
    assert response.get_json()["message"] == "no useful node id here: no node is called nobody"
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", V2_SERVERS)]


# Nova's security groups, volumes and key pairs, as the catalog of _v2_0__auth.json
# places them, and what openstack_v1_1's fixtures hold there.
GROUPS = "/v2/1337/os-security-groups"
RULES = "/v2/1337/os-security-group-rules"
VOLUMES = "/v2/1337/os-volumes"
KEYPAIRS = "/v2/1337/os-keypairs"
# _os_volumes.json's first volume, attached to server 12065 (GET: _os_volumes_cd76...json).
VOLUME_ID = "cd76a3a1-c4ce-40f6-9b9f-07a61508938d"
VOLUME = f"{VOLUMES}/{VOLUME_ID}"
ATTACHMENTS = "/v2/1337/servers/12065/os-volume_attachments"
DEFAULT_GROUP = {"id": "2", "name": "default", "description": "default", "rules": []}
FTP_RULE = {"protocol": "tcp", "from_port": 20, "to_port": 21, "cidr": "0.0.0.0/0"}
FTP_GROUP = {
    "id": "4",
    "name": "ftp",
    "description": "FTP Client-Server - Open 20-21 ports",
    "rules": [FTP_RULE],
}


def sent(cloud, method: str, path: str) -> list:
    """The JSON bodies of the ``method`` requests to ``path`` the cloud has seen."""
    return [json.loads(seen[2]) for seen in cloud.requests if seen[:2] == (method, path)]


@pytest.mark.parametrize("path", ["/api/v1/fw", "/api/v1/fw/default"])
def test_fw_lists_fixture_groups_with_rules(client, openstack, path):
    """GET /fw answers the groups of _os_security_groups.json with their ingress rules."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "groups": [DEFAULT_GROUP, FTP_GROUP]}
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", GROUPS)]


def test_fw_create_group(client, openstack):
    """POST /fw sends name and description and answers _os_security_groups_create.json's group."""
    response = client.post(
        "/api/v1/fw", json={"name": "test", "description": "Test Security Group"}
    )
    assert response.status_code == 200
    created = {"id": "6", "name": "test", "description": "Test Security Group", "rules": []}
    assert response.get_json() == {"status": "ok", "group": created}
    assert sent(openstack, "POST", GROUPS) == [
        {"security_group": {"name": "test", "description": "Test Security Group"}}
    ]
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", GROUPS),
        ("POST", GROUPS),
        ("GET", GROUPS),
    ]
    groups = client.get("/api/v1/fw").get_json()["groups"]
    assert groups == [DEFAULT_GROUP, FTP_GROUP, created]


def test_fw_delete_group_by_name(client, openstack):
    """DELETE /fw of "ftp": one listing to find its id, one DELETE; the next listing lacks it."""
    response = client.delete("/api/v1/fw", json={"group": "ftp"})
    assert response.get_json() == {"status": "ok", "result": "Group 4 deleted"}
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", GROUPS), ("DELETE", f"{GROUPS}/4")]
    assert client.get("/api/v1/fw").get_json()["groups"] == [DEFAULT_GROUP]
    gone = client.delete("/api/v1/fw", json={"group": "ftp"})
    assert gone.status_code == 404
    assert gone.get_json()["message"] == "no security group ftp"


def test_fw_create_existing_name_is_409(client, openstack):
    """A group name the fixture has: 409 after one listing, and nothing created."""
    response = client.post("/api/v1/fw", json={"name": "ftp"})
    assert response.status_code == 409
    assert response.get_json()["message"] == "a security group called ftp exists already"
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", GROUPS)]


def test_fw_open_port(client, openstack):
    """Opening 8080 on "ftp" POSTs one rule with the group's id and answers the group with it."""
    response = client.put("/api/v1/fw/open", json={"group": "ftp", "from_port": 8080})
    assert response.status_code == 200
    opened = {"protocol": "tcp", "from_port": 8080, "to_port": 8080, "cidr": "0.0.0.0/0"}
    assert response.get_json() == {
        "status": "ok",
        "group": {**FTP_GROUP, "rules": [FTP_RULE, opened]},
        "result": "opened",
    }
    assert sent(openstack, "POST", RULES) == [
        {
            "security_group_rule": {
                "ip_protocol": "tcp",
                "from_port": 8080,
                "to_port": 8080,
                "cidr": "0.0.0.0/0",
                "group_id": None,
                "parent_group_id": 4,
            }
        }
    ]
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", GROUPS),
        ("POST", RULES),
        ("GET", GROUPS),
    ]


def test_fw_open_range_by_group_id(client, openstack):
    """By group id, a udp range from a network given by one of its addresses, on a named cloud."""
    rule = {
        "group": "2",
        "protocol": "UDP",
        "from_port": 5000,
        "to_port": 5010,
        "cidr": "10.1.2.3/16",
    }
    response = client.put("/api/v1/fw/open/default", json=rule)
    assert response.status_code == 200
    opened = {"protocol": "udp", "from_port": 5000, "to_port": 5010, "cidr": "10.1.0.0/16"}
    assert response.get_json()["group"] == {**DEFAULT_GROUP, "rules": [opened]}
    assert sent(openstack, "POST", RULES) == [
        {
            "security_group_rule": {
                "ip_protocol": "udp",
                "from_port": 5000,
                "to_port": 5010,
                "cidr": "10.1.0.0/16",
                "group_id": None,
                "parent_group_id": 2,
            }
        }
    ]


def test_fw_open_rule_the_fixture_has_is_already_open(client, openstack):
    """tcp 20-21 from anywhere is the fixture's rule of "ftp": "already open", no POST."""
    response = client.put("/api/v1/fw/open", json={"group": "ftp", "from_port": 20, "to_port": 21})
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "group": FTP_GROUP, "result": "already open"}
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", GROUPS)]


def test_fw_close_fixture_rule(client, openstack):
    """Closing tcp 20-21 of group 4 DELETEs the fixture's rule 1; the group has no rule left."""
    response = client.put("/api/v1/fw/close", json={"group": "4", "from_port": 20, "to_port": 21})
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "group": {**FTP_GROUP, "rules": []},
        "result": "closed",
    }
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", GROUPS),
        ("DELETE", f"{RULES}/1"),
        ("GET", GROUPS),
    ]


def test_fw_open_then_close_deletes_the_new_rule(client, openstack):
    """A rule opened through the API is closed by the id nova gave it (2, as in the fixture)."""
    rule = {"group": "ftp", "from_port": 8080}
    assert client.put("/api/v1/fw/open", json=rule).get_json()["result"] == "opened"
    upstream(openstack)
    response = client.put("/api/v1/fw/close", json=rule)
    assert response.status_code == 200
    assert response.get_json()["group"] == FTP_GROUP
    assert upstream(openstack) == [("GET", GROUPS), ("DELETE", f"{RULES}/2"), ("GET", GROUPS)]


def test_fw_close_absent_rule_is_404(client, openstack):
    """Closing a port "ftp" does not open: 404 naming the rule, after one listing."""
    response = client.put("/api/v1/fw/close", json={"group": "ftp", "from_port": 22})
    assert response.status_code == 404
    assert response.get_json()["message"] == "group ftp has no rule tcp 22-22 from 0.0.0.0/0"
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", GROUPS)]


@pytest.mark.parametrize("action", ["open", "close"])
def test_fw_unknown_group_is_404(client, openstack, action):
    """A group neither id nor name of any: 404, after one listing."""
    response = client.put(f"/api/v1/fw/{action}", json={"group": "nobody", "from_port": 22})
    assert response.status_code == 404
    assert response.get_json()["message"] == "no security group nobody"
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", GROUPS)]


def test_fw_open_refused_by_nova_is_502(client, openstack):
    """A 500 on POST /os-security-group-rules is a 502, with no listing after it."""
    openstack.failures[RULES] = [500]
    response = client.put("/api/v1/fw/open", json={"group": "ftp", "from_port": 8080})
    assert response.status_code == 502
    assert "The server has either erred" in response.get_json()["message"]
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", GROUPS), ("POST", RULES)]


def test_volumes_lists_fixture_volumes(client, openstack):
    """GET /volumes answers the two volumes of _os_volumes.json."""
    response = client.get("/api/v1/volumes")
    assert response.status_code == 200
    volumes = response.get_json()["volumes"]
    assert [(v["id"], v["name"], v["size"], v["state"]) for v in volumes] == [
        (VOLUME_ID, "test_volume_2", 2, "available"),
        ("cfcec3bc-b736-4db5-9535-4c24112691b5", "test_volume", 50, "unknown"),
    ]
    assert all((v["provider"], v["cloud_type"]) == ("openstack", "OpenStack") for v in volumes)
    assert volumes[0]["extra"]["attachments"] == [
        {"device": "/dev/vdb", "id": VOLUME_ID, "serverId": "12065", "volumeId": VOLUME_ID}
    ]
    assert volumes[1]["extra"]["attachments"] == []
    assert volumes[1]["extra"]["description"] == "some description"
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", VOLUMES)]


def test_storage_create(client, openstack):
    """POST /storage/create sends size and name and answers _os_volumes_create.json's volume."""
    response = client.post("/api/v1/storage/create", json={"name": "test", "size": 1})
    assert response.status_code == 200
    volume = response.get_json()["volume"]
    assert (volume["id"], volume["name"], volume["size"], volume["state"]) == (
        "43b7db44-0497-40fa-b817-c906f13bbea3",
        "test",
        1,
        "creating",
    )
    assert sent(openstack, "POST", VOLUMES) == [
        {
            "volume": {
                "display_name": "test",
                "display_description": "test",
                "size": 1,
                "metadata": {"contents": "test"},
            }
        }
    ]
    assert upstream(openstack) == [("POST", V2_TOKENS), ("POST", VOLUMES)]


def test_storage_attach_to_server(client, openstack):
    """Attach: the volume and the server by id, then one POST with the volume id and device."""
    response = client.put(
        "/api/v1/storage/attach",
        json={"volume": VOLUME_ID, "node": "12065", "device": "/dev/sdb"},
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "result": f"Volume {VOLUME_ID} attached to node 12065",
    }
    assert sent(openstack, "POST", ATTACHMENTS) == [
        {"volumeAttachment": {"volumeId": VOLUME_ID, "device": "/dev/sdb"}}
    ]
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", VOLUME),
        ("GET", "/v2/1337/servers/12065"),
        ("POST", ATTACHMENTS),
    ]


def test_storage_attach_by_hostname(client, openstack):
    """By hostname, the server is found in the listing ("lc-test-2" is 12065)."""
    response = client.put(
        "/api/v1/storage/attach",
        json={"volume": VOLUME_ID, "hostname": "lc-test-2", "device": "/dev/sdb"},
    )
    assert response.status_code == 200
    assert response.get_json()["result"] == f"Volume {VOLUME_ID} attached to node 12065"
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", VOLUME),
        ("GET", V2_SERVERS),
        ("POST", ATTACHMENTS),
    ]


def test_storage_detach(client, openstack):
    """Detach DELETEs the attachment the volume's fixture names, on its server."""
    response = client.put("/api/v1/storage/detach", json={"volume": VOLUME_ID})
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "result": f"Volume {VOLUME_ID} detached"}
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", VOLUME),
        ("DELETE", f"{ATTACHMENTS}/{VOLUME_ID}"),
    ]


def test_storage_destroy(client, openstack):
    """Destroy DELETEs /os-volumes/<id> after looking the volume up."""
    response = client.put("/api/v1/storage/destroy", json={"volume": VOLUME_ID})
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "result": f"Volume {VOLUME_ID} destroyed"}
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", VOLUME), ("DELETE", VOLUME)]


@pytest.mark.parametrize("action", ["attach", "detach", "destroy"])
def test_storage_unknown_volume_is_404(client, openstack, action):
    """GET /os-volumes/<id> answering 404 is a 404, with no server looked up or changed."""
    response = client.put(f"/api/v1/storage/{action}", json={"volume": "nope", "node": "12065"})
    assert response.status_code == 404
    assert response.get_json()["message"] == "no volume nope"
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", f"{VOLUMES}/nope")]


def test_keypairs_by_name_and_fingerprint_only(client, openstack):
    """GET /keypairs answers _os_keypairs.json's names and fingerprints, no key material."""
    response = client.get("/api/v1/keypairs")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "keypairs": [
            {"name": "key1", "fingerprint": "22:0e:d6:f7:bd:5e:ee:49:cf:1f:10:d5:9c:a8:35:64"},
            {"name": "key2", "fingerprint": "5d:66:33:ae:99:0f:fb:cb:86:f2:bc:ae:53:99:b6:ed"},
        ],
    }
    assert "ssh-rsa" not in response.get_data(as_text=True)
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", KEYPAIRS)]


def test_start_vm_with_security_group(client, openstack):
    """A start with security_groups looks the names up and POSTs /servers with them."""
    response = client.post("/api/v1/vm/start", json={**START_VM, "security_groups": ["ftp"]})
    assert response.status_code == 200
    assert response.get_json()["nodes"]["id"] == CREATED_ID
    assert sent(openstack, "POST", V2_CREATE) == [
        {
            "server": {
                "name": "web-1",
                "imageRef": "13",
                "flavorRef": "1",
                "key_name": "my-key",
                "metadata": {"team": "a"},
                "security_groups": [{"name": "ftp"}],
            }
        }
    ]
    assert upstream(openstack) == [
        ("POST", V2_TOKENS),
        ("GET", GROUPS),
        ("GET", V2_IMAGE_13),
        ("GET", V2_FLAVORS),
        ("POST", V2_CREATE),
        ("GET", CREATED),
    ]


def test_start_vm_with_unknown_security_group_is_400(client, openstack):
    """A group name nova does not have: 400 naming it, after the group listing alone."""
    body = {**START_VM, "security_groups": ["ftp", "nobody"]}
    response = client.post("/api/v1/vm/start", json=body)
    assert response.status_code == 400
    assert response.get_json()["message"] == "security_groups: no group nobody"
    assert upstream(openstack) == [("POST", V2_TOKENS), ("GET", GROUPS)]


def test_libcloud_keeps_the_authentication_the_tenants_listing_relies_on():
    """catalog.authenticate_like_requests reaches into libcloud's OpenStack connection,
    which has no public call for it: this fails first if libcloud renames or drops it."""
    populate = getattr(OpenStackBaseConnection, "_populate_hosts_and_request_paths", None)
    assert callable(populate)
    assert list(inspect.signature(populate).parameters) == ["self"]
