"""Paging of the listings (limit and marker), on a Dummy cloud of 25 nodes."""

import pytest
from conftest import assert_error, cloud_calls, token_client

# libcloud's DummyNodeDriver(25): dummy-0 to dummy-24, ids 0 to 24; libcloud's Node
# keeps a falsy id as None, so the first node's id reads "None".
NODE_IDS = ["None"] + [str(number) for number in range(1, 25)]
LIMIT_MESSAGE = "limit: a whole number from 1 to 1000"


@pytest.fixture
def app(make_app):
    """An app whose cloud `big` has 25 nodes; `default` is the two-node Dummy."""
    return make_app(
        CLOUD_FARM={"default": {"ENGINE": "dummy"}, "big": {"ENGINE": "dummy", "USER": 25}}
    )


def walk(client, path, key, limit, id_key="id"):
    """Follow next_marker from the first page to the last; every page's ids, and the answers."""
    pages, answers, marker = [], [], None
    while True:
        query = {"limit": limit} if marker is None else {"limit": limit, "marker": marker}
        response = client.get(path, query_string=query)
        assert response.status_code == 200, response.json
        body = response.json
        answers.append(body)
        assert set(body) == {"status", key, "next_marker"}
        pages.append([str(item[id_key]) for item in body[key]])
        marker = body["next_marker"]
        if marker is None:
            return pages, answers
        assert marker == pages[-1][-1]
        assert len(pages) <= 30, "next_marker never became null"


def test_pages_of_ten_walk_every_node_once_in_order(client):
    """Pages of 10, 10 and 5 nodes: each node once, in the listing's order; null at the end."""
    pages, answers = walk(client, "/api/v1/nodes/big", "nodes", 10)
    assert pages == [NODE_IDS[:10], NODE_IDS[10:20], NODE_IDS[20:]]
    assert [body["next_marker"] for body in answers] == ["9", "19", None]
    assert [node["name"] for node in answers[0]["nodes"]][:2] == ["dummy-0", "dummy-1"]
    everything = client.get("/api/v1/nodes/big").json["nodes"]
    assert [node for body in answers for node in body["nodes"]] == everything


def test_unpaged_listing_is_unchanged(client):
    """Without limit or marker: every node, and no next_marker key at all."""
    response = client.get("/api/v1/nodes/big")
    assert response.status_code == 200
    assert list(response.json) == ["status", "nodes"]
    assert [node["id"] for node in response.json["nodes"]] == NODE_IDS
    assert client.get("/api/v1/nodes/big?limit=1000").json["nodes"] == response.json["nodes"]


@pytest.mark.parametrize(
    ("limit", "ids", "next_marker"),
    [
        ("1", ["None"], "None"),
        ("24", NODE_IDS[:24], "23"),
        ("25", NODE_IDS, None),
        ("26", NODE_IDS, None),
        ("1000", NODE_IDS, None),
    ],
)
def test_first_page_sizes(client, limit, ids, next_marker):
    """A page that ends exactly at the last node already says null: no empty page follows."""
    body = client.get(f"/api/v1/nodes/big?limit={limit}").json
    assert [node["id"] for node in body["nodes"]] == ids
    assert body["next_marker"] == next_marker


def test_marker_alone_pages_by_100(make_app):
    """Only a marker: up to 100 items after it (checked on a Dummy cloud of 250 nodes)."""
    client = token_client(make_app(CLOUD_FARM={"default": {"ENGINE": "dummy", "USER": 250}}))
    body = client.get("/api/v1/nodes?marker=9").json
    assert [node["id"] for node in body["nodes"]] == [str(n) for n in range(10, 110)]
    assert body["next_marker"] == "109"
    last = client.get("/api/v1/nodes?marker=209").json
    assert [node["id"] for node in last["nodes"]] == [str(n) for n in range(210, 250)]
    assert last["next_marker"] is None


def test_marker_of_the_last_node_is_an_empty_last_page(client):
    """After the last node: an empty page and null."""
    body = client.get("/api/v1/nodes/big?limit=5&marker=24").json
    assert body == {"status": "ok", "nodes": [], "next_marker": None}


def test_v2_listings_page_as_v1(client):
    """/api/v2 pages the same way, with the same answers as /api/v1."""
    pages, answers = walk(client, "/api/v2/nodes/big", "nodes", 10)
    assert pages == [NODE_IDS[:10], NODE_IDS[10:20], NODE_IDS[20:]]
    for body, marker in zip(answers, [None, "9", "19"], strict=True):
        query = {"limit": 10} if marker is None else {"limit": 10, "marker": marker}
        assert client.get("/api/v1/nodes/big", query_string=query).json == body


def test_without_cloud_the_default_cloud_pages(client):
    """No cloud in the URL: the default cloud's two nodes, one page each."""
    pages, _ = walk(client, "/api/v1/nodes", "nodes", 1)
    assert pages == [["1"], ["2"]]


@pytest.mark.parametrize(
    ("action", "key", "ids"),
    [
        ("images", "images", ["1", "2", "3"]),
        ("flavors", "flavors", ["1", "2", "3", "4"]),
        ("sizes", "flavors", ["1", "2", "3", "4"]),
        ("locations", "locations", ["1", "2", "3"]),
    ],
)
def test_other_listings_page_by_id(client, action, key, ids):
    """Images, flavors (sizes) and locations of the Dummy driver page by id, two at a time."""
    pages, _ = walk(client, f"/api/v1/{action}/big", key, 2)
    assert pages == [ids[i : i + 2] for i in range(0, len(ids), 2)]
    assert [item["id"] for item in client.get(f"/api/v1/{action}/big").json[key]] == ids


def test_empty_listing_pages_as_one_empty_page(client):
    """Tenants (none on Dummy): an empty page and null; a marker names nothing there."""
    body = client.get("/api/v1/tenants/big?limit=10").json
    assert body == {"status": "ok", "tenants": [], "next_marker": None}
    assert_error(
        client.get("/api/v1/tenants/big?marker=1"), 400, "marker: nothing called 1 in this listing"
    )


def test_keypairs_page_by_name(make_app, cloud):
    """Key pairs (EC2 on moto: the Dummy driver has none) page by name."""
    names = [f"key-{letter}" for letter in "abcde"]
    for name in names:
        cloud.boto3_client().create_key_pair(KeyName=name)
    client = token_client(make_app(CLOUD_FARM={"default": cloud.farm_entry()}))
    listed = [pair["name"] for pair in client.get("/api/v1/keypairs").json["keypairs"]]
    assert sorted(listed) == names
    pages, answers = walk(client, "/api/v1/keypairs", "keypairs", 2, id_key="name")
    assert pages == [listed[0:2], listed[2:4], listed[4:]]
    assert [body["next_marker"] for body in answers] == [listed[1], listed[3], None]
    assert_error(
        client.get("/api/v1/keypairs?marker=key-z"),
        400,
        "marker: nothing called key-z in this listing",
    )


@pytest.mark.parametrize(
    "limit", ["0", "1001", "x", "²", "-1", "1.5", "", " 5", "+5", "9" * 5000, "0" * 5000 + "1001"]
)
def test_bad_limit_is_400_without_asking_the_cloud(client, limit):
    """A limit that is not a whole number from 1 to 1000 is a 400; the cloud is not asked."""
    before = cloud_calls("big", "list_nodes")
    response = client.get("/api/v1/nodes/big", query_string={"limit": limit})
    assert_error(response, 400, LIMIT_MESSAGE)
    assert cloud_calls("big", "list_nodes") == before


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("", "marker: non-empty string"),
        ("9" * 256, "marker: at most 255 characters"),
        ("a\x00b", "marker: no NUL character"),
    ],
)
def test_malformed_marker_is_400_without_asking_the_cloud(client, marker, message):
    """A marker that cannot be an id is a 400 naming the rule; the cloud is not asked."""
    before = cloud_calls("big", "list_nodes")
    assert_error(client.get("/api/v1/nodes/big", query_string={"marker": marker}), 400, message)
    assert cloud_calls("big", "list_nodes") == before


def test_leading_zeros_of_a_limit_do_not_count(client):
    """A limit is read as the number it is, however many zeros come first."""
    response = client.get("/api/v1/nodes/big", query_string={"limit": "0" * 5000 + "3"})
    assert response.status_code == 200
    assert len(response.json["nodes"]) == 3
    assert response.json["next_marker"] == response.json["nodes"][-1]["id"]


def test_a_good_page_asks_the_cloud_once(client):
    """The counterpart of the tests above: a valid page is one listing call to the cloud."""
    before = cloud_calls("big", "list_nodes")
    assert client.get("/api/v1/nodes/big?limit=3&marker=5").status_code == 200
    assert cloud_calls("big", "list_nodes") == before + 1


def test_bad_limit_with_an_unknown_marker_names_the_limit(client):
    """Both wrong: the limit is refused first, before the cloud is asked for the marker."""
    before = cloud_calls("big", "list_nodes")
    response = client.get("/api/v1/nodes/big?limit=0&marker=nope")
    assert_error(response, 400, LIMIT_MESSAGE)
    assert cloud_calls("big", "list_nodes") == before


@pytest.mark.parametrize("marker", ["nope", "25", "dummy-3", " 3", "03"])
def test_unknown_marker_is_400_naming_it(client, marker):
    """A marker that is no node id of the listing is a 400 that names it."""
    response = client.get("/api/v1/nodes/big", query_string={"limit": 5, "marker": marker})
    assert_error(response, 400, f"marker: nothing called {marker} in this listing")


def test_marker_of_a_node_stopped_since_is_400(client):
    """The node a client paged to is destroyed: its marker is a 400 naming it, not page one."""
    first = client.get("/api/v1/nodes/big?limit=10").json
    assert first["next_marker"] == "9"
    stopped = client.put("/api/v1/vm/stop/big", json={"node": "9"})
    assert stopped.status_code == 200, stopped.json
    response = client.get("/api/v1/nodes/big?limit=10&marker=9")
    assert_error(response, 400, "marker: nothing called 9 in this listing")
    rest = client.get("/api/v1/nodes/big?limit=10&marker=8").json
    assert [node["id"] for node in rest["nodes"]] == NODE_IDS[10:20]


def test_unknown_action_or_cloud_wins_over_paging(client):
    """Paging parameters change nothing about an unknown listing or cloud."""
    response = client.get("/api/v1/volcanoes/big?limit=5")
    assert response.status_code == 400
    assert response.json["message"] == "Unrecognized action found: volcanoes"
    response = client.get("/api/v1/nodes/atlantis?limit=5&marker=1")
    assert response.status_code == 404
    assert "atlantis" in response.json["message"]


def test_paging_needs_a_token(anonymous):
    """Without a token a paged listing is a 401, as the whole listing is."""
    response = anonymous.get("/api/v1/nodes/big?limit=5")
    assert response.status_code == 401
    assert "nodes" not in response.json
