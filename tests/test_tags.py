"""Tags on libcloud's Dummy cloud, SQLite and PostgreSQL: an assign, an extend or a request
tags an assignment; the tags are shown in vm/status, in the request and in the history,
replaced by an extend, cleared by a release; bad tags, too many and a pool's missing
required keys are 400s that write nothing; beside Cistern tags are refused."""

import pytest
import sqlalchemy
from conftest import SQLITE_ONLY, assert_error, token_client

from dispatcher import create_app, pools
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.models import Assignment, AuditEntry, VMRequest
from dispatcher.worker import scheduler

ASSIGN = "/api/v1/vm/action/assign"
EXTEND = "/api/v1/vm/action/extend/default"
RELEASE = "/api/v1/vm/action/release/default"
STATUS = "/api/v1/vm/status/default"
HISTORY = "/api/v1/vm/history/default"
REQUESTS = "/api/v1/requests"
TAGS = {"project": "genomics", "ticket": "OPS-12"}


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


def pool(**more) -> dict:
    return {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": 2,
        "max_total": 2,
        "release": "reuse",  # the released VM stays in the ledger, free, to be looked at
        **more,
    }


def filled(make_app, **settings):
    """An app whose pool web has its two VMs free, and a client of it."""
    app = make_app(**{"POOLS": {"web": pool()}, **settings})
    client = token_client(app)
    for _ in range(2):
        with app.app_context():
            scheduler.run_pass(pools.every())
    return app, client


def assign(client, **body):
    return client.put(ASSIGN, json={"vm_type": "web", "user": "ada", **body})


def status_tags(client) -> dict:
    """The tags of each VM vm/status shows, by node id."""
    return {row["id_vm"]: row["tags"] for row in client.get(STATUS).json["nodes"]}


def written(app) -> tuple[int, int, int]:
    """How many VMs are held, history entries and requests there are."""
    with app.app_context():
        held = db.session.scalar(
            sqlalchemy.select(sqlalchemy.func.count()).where(Assignment.user.is_not(None))
        )
        entries = db.session.scalar(sqlalchemy.select(sqlalchemy.func.count(AuditEntry.id)))
        asked = db.session.scalar(sqlalchemy.select(sqlalchemy.func.count(VMRequest.id)))
    return held, entries, asked


def test_tags_go_with_the_assignment_until_its_release(make_app):
    app, client = filled(make_app)
    taken = assign(client, tags=TAGS)
    assert taken.status_code == 200, taken.json
    vm = taken.json["id_vm"]

    shown = status_tags(client)
    assert shown[vm] == TAGS
    assert [tags for node, tags in shown.items() if node != vm] == [None]
    entry = client.get(HISTORY, query_string={"action": "assign"}).json["history"][0]
    assert (entry["id_vm"], entry["tags"]) == (vm, TAGS)

    kept = client.put(EXTEND, json={"node": vm, "lease": 600})
    assert kept.status_code == 200, kept.json
    assert status_tags(client)[vm] == TAGS
    replaced = client.put(EXTEND, json={"node": vm, "lease": 600, "tags": {"project": "x"}})
    assert replaced.status_code == 200, replaced.json
    assert status_tags(client)[vm] == {"project": "x"}
    extends = client.get(HISTORY, query_string={"action": "extend"}).json["history"]
    assert [entry["tags"] for entry in extends] == [{"project": "x"}, None]

    released = client.put(RELEASE, json={"node": vm})
    assert released.status_code == 200, released.json
    assert status_tags(client)[vm] is None
    with app.app_context():
        stored = db.session.scalars(sqlalchemy.select(Assignment.tags)).all()
        # cleared to SQL NULL, not a JSON null
        nulls = db.session.scalar(
            sqlalchemy.select(sqlalchemy.func.count()).where(Assignment.tags.is_(None))
        )
    assert stored == [None, None] and nulls == 2


def test_an_extend_with_empty_tags_clears_them(make_app):
    app, client = filled(make_app)
    vm = assign(client, tags=TAGS).json["id_vm"]
    assert client.put(EXTEND, json={"node": vm, "lease": 60, "tags": {}}).status_code == 200
    assert status_tags(client)[vm] is None


def test_an_assign_by_node_is_tagged_too(make_app):
    app = make_app()
    client = token_client(app)
    body = {"node": "1", "user": "ada", "vm_type": "app", "tags": {"project": ""}}
    taken = client.put(f"{ASSIGN}/fake_driver", json=body)
    assert taken.status_code == 200, taken.json
    rows = client.get("/api/v1/vm/status/fake_driver").json["nodes"]
    assert [row["tags"] for row in rows if row["id_vm"] == "1"] == [{"project": ""}]
    entry = client.get("/api/v1/vm/history/fake_driver").json["history"][0]
    assert entry["tags"] == {"project": ""}


def test_a_requests_tags_go_onto_each_vm_it_is_handed(make_app):
    app, client = filled(make_app)
    answer = client.post(REQUESTS, json={"vms": {"web": 2}, "user": "ada", "tags": TAGS})
    assert answer.status_code == 200, answer.json
    shown = answer.json["request"]
    assert (shown["state"], shown["tags"]) == ("ready", TAGS)
    assert client.get(f"{REQUESTS}/{shown['id']}").json["request"]["tags"] == TAGS
    handed = {vm["id_vm"] for vm in shown["vms"]}
    assert len(handed) == 2
    assert {vm: status_tags(client)[vm] for vm in handed} == dict.fromkeys(handed, TAGS)
    entries = client.get(HISTORY).json["history"]
    assert [(e["action"], e["tags"]) for e in entries[:2]] == [("serve", TAGS), ("request", TAGS)]


def test_a_request_without_tags_shows_null(make_app):
    app, client = filled(make_app)
    shown = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada"}).json["request"]
    assert shown["tags"] is None
    assert status_tags(client)[shown["vms"][0]["id_vm"]] is None


LONG_KEY = "k" * 65


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("genomics", 'tags: an object of texts, like {"project": "genomics"}'),
        (["project"], 'tags: an object of texts, like {"project": "genomics"}'),
        ({"": "x"}, "tags: key '' must be 1 to 64 letters, digits, '_', '-', '.', ':' or '/'"),
        (
            {LONG_KEY: "x"},
            f"tags: key {LONG_KEY[:40]!r} must be 1 to 64 letters, digits, '_', '-', '.', "
            "':' or '/'",
        ),
        ({"pro ject": "x"}, "tags: key 'pro ject' must be 1 to 64 letters, digits"),
        ({"pro\x00ject": "x"}, "tags: key 'pro\\x00ject' must be 1 to 64 letters"),
        ({"project": 7}, "tags: 'project': a string"),
        ({"project": None}, "tags: 'project': a string"),
        ({"project": "x" * 257}, "tags: 'project': at most 256 characters"),
        ({"project": "gen\x00omics"}, "tags: 'project': no NUL character"),
        ({f"k{i}": "" for i in range(101)}, "tags: at most 100 keys"),
        ({f"k{i}": "" for i in range(11)}, "tags: at most 10 keys, not 11"),
    ],
)
@SQLITE_ONLY
def test_bad_tags_are_a_400_naming_the_key_and_write_nothing(make_app, tags, message):
    app, client = filled(make_app)
    vm = assign(client).json["id_vm"]
    before = written(app)
    by_node = {"node": vm, "user": "b", "vm_type": "web", "tags": tags}
    refused = [
        assign(client, tags=tags),
        client.put(f"{ASSIGN}/default", json=by_node),
        client.put(EXTEND, json={"node": vm, "lease": 60, "tags": tags}),
        client.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada", "tags": tags}),
    ]
    for response in refused:
        assert_error(response, 400, message, prefix=True)
    assert written(app) == before
    assert status_tags(client)[vm] is None


def test_tag_max_bounds_the_keys(make_app):
    app, client = filled(make_app, TAG_MAX=2)
    before = written(app)
    three = {"a": "1", "b": "2", "c": "3"}
    assert_error(assign(client, tags=three), 400, "tags: at most 2 keys, not 3")
    refused = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada", "tags": three})
    assert_error(refused, 400, "tags: at most 2 keys, not 3")
    assert written(app) == before
    taken = assign(client, tags={"a": "1", "b": "2"})
    assert taken.status_code == 200, taken.json
    assert status_tags(client)[taken.json["id_vm"]] == {"a": "1", "b": "2"}


def test_a_pool_that_requires_a_tag_refuses_an_assign_and_a_request_without_it(make_app):
    app = make_app(POOLS={"web": pool(require_tags=["project"])})
    client = token_client(app)
    for _ in range(2):
        with app.app_context():
            scheduler.run_pass(pools.every())
    assert client.get("/api/v1/pools/web").json["pool"]["require_tags"] == ["project"]
    before = written(app)
    message = "tags: pool web requires the tag 'project'"
    assert_error(assign(client), 400, message)
    assert_error(assign(client, tags={"ticket": "1"}), 400, message)
    assert_error(client.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada"}), 400, message)
    assert written(app) == before

    taken = assign(client, tags={"project": "genomics"})
    assert taken.status_code == 200, taken.json
    asked = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada", "tags": {"project": "g"}})
    assert asked.status_code == 200, asked.json
    assert asked.json["request"]["state"] == "ready"


def test_a_pools_vm_assigned_by_node_needs_the_required_tags_too(make_app):
    app = make_app(POOLS={"web": pool(require_tags=["project"])})
    client = token_client(app)
    for _ in range(2):
        with app.app_context():
            scheduler.run_pass(pools.every())
    vm = client.get(STATUS).json["nodes"][0]["id_vm"]
    body = {"node": vm, "user": "ada", "vm_type": "web"}
    refused = client.put(f"{ASSIGN}/default", json=body)
    assert_error(refused, 400, "tags: pool web requires the tag 'project'")
    taken = client.put(f"{ASSIGN}/default", json={**body, "tags": {"project": "g"}})
    assert taken.status_code == 200, taken.json


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"TAG_MAX": -1}, "TAG_MAX must be a whole number from 0, at most 100"),
        ({"TAG_MAX": "10"}, "TAG_MAX must be a whole number from 0, at most 100"),
        ({"TAG_MAX": 101}, "TAG_MAX must be a whole number from 0, at most 100"),
        (
            {"POOLS": {"web": pool(require_tags="project")}},
            "POOLS['web']: require_tags must be a list of tag keys",
        ),
        (
            {"POOLS": {"web": pool(require_tags=["pro ject"])}},
            "POOLS['web']: require_tags: 'pro ject' must be 1 to 64 letters, digits, '_', "
            "'-', '.', ':' or '/'",
        ),
        (
            {"POOLS": {"web": pool(require_tags=["project", "project"])}},
            "POOLS['web']: require_tags names 'project' twice",
        ),
        (
            {"TAG_MAX": 1, "POOLS": {"web": pool(require_tags=["project", "ticket"])}},
            "POOLS['web']: require_tags names 2 keys, more than TAG_MAX (1)",
        ),
    ],
)
def test_tag_settings_that_cannot_work_stop_the_start(settings, message):
    with pytest.raises(ConfigurationError) as caught:
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", **settings})
    assert str(caught.value) == message


@SQLITE_ONLY
def test_tags_beside_cistern_are_a_400_and_ask_cistern_nothing(make_app, cistern):
    app = make_app(ASSIGNMENT_BACKEND="cistern", CISTERN_URL=cistern.url)
    client = token_client(app)
    body = {"node": "2", "user": "alice", "vm_type": "jupyter", "tags": TAGS}
    refused = client.put(f"{ASSIGN}/fake_driver", json=body)
    assert_error(refused, 400, "tags: tags need the local ledger (ASSIGNMENT_BACKEND=local)")
    assert cistern.requests == []
    without = client.put(f"{ASSIGN}/fake_driver", json={**body, "tags": {}})
    assert without.status_code == 200, without.json
