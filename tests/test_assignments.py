"""Assigning and releasing VMs with the local ledger, on the Dummy driver."""

import pytest
from conftest import ASSIGNMENT_KEYS, assert_error, token_client

from dispatcher import clouds
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.models import ASSIGNED, DELETED, FREE, Assignment, AuditEntry

ASSIGN = "/api/v1/vm/action/assign/fake_driver"
RELEASE = "/api/v1/vm/action/release/fake_driver"


@pytest.fixture
def database_url(any_database_url):
    """The ledger's tests run on SQLite and, where a server answers, on PostgreSQL."""
    return any_database_url


def rows(app):
    with app.app_context():
        return {
            row.id_vm: (row.status, row.user, row.recipe)
            for row in db.session.scalars(db.select(Assignment).order_by(Assignment.id))
        }


def history(app):
    with app.app_context():
        return [
            (entry.action, entry.id_vm, entry.outcome)
            for entry in db.session.scalars(db.select(AuditEntry).order_by(AuditEntry.id))
        ]


def node_names(client):
    return [node["name"] for node in client.get("/api/v1/nodes/fake_driver").json["nodes"]]


def assign(client, user="zeppolo", **reference):
    return client.put(ASSIGN, json={**(reference or {"node": "1"}), "user": user, "vm_type": "app"})


def test_assign_registers_the_vm_and_gives_it_to_the_user(app, client):
    """The original's answer; the ledger learns the VM and records its holder."""
    response = assign(client)
    assert response.status_code == 200
    assert response.json == {"status": "ok", "id_vm": "1", "id": 1, "result": "Node 1 assigned"}
    assert rows(app) == {"1": (ASSIGNED, "zeppolo", "app")}


def test_assign_by_hostname(app, client):
    """A VM can be named by hostname: the cloud resolves it on first sight."""
    response = assign(client, hostname="dummy-2")
    assert response.json["id_vm"] == "2"
    assert rows(app) == {"2": (ASSIGNED, "zeppolo", "app")}


def test_status_lists_free_and_assigned_vms_in_the_assignment_shape(client):
    """GET /vm/status answers ASSIGNMENT rows (with the local ledger's tags): the assigned
    VM and a started free one."""
    assign(client)
    client.post("/api/v1/vm/start/fake_driver", json={"name": "w", "image": "1", "size": "1"})
    nodes = client.get("/api/v1/vm/status/fake_driver").json["nodes"]
    assert all(set(node) == ASSIGNMENT_KEYS | {"tags"} for node in nodes)
    assert [node["tags"] for node in nodes] == [None, None]
    assert [
        (n["id_vm"], n["hostname"], n["status"], n["status_desc"], n["user"]) for n in nodes
    ] == [
        ("1", "dummy-1", 2, "ASSIGNED", "zeppolo"),
        ("3", "dummy-3", 1, "FREE", None),
    ]
    assert nodes[0]["cloud"] == "fake_driver"
    assert nodes[0]["recipe"] == "app"


def test_vm_start_registers_a_free_vm_for_its_vm_type(app, client):
    """vm/start records the new VM as free, for the vm_type the body names."""
    body = {"name": "w", "image": "1", "size": "1", "vm_type": "galaxy"}
    assert client.post("/api/v1/vm/start/fake_driver", json=body).status_code == 200
    assert rows(app) == {"3": (FREE, None, "galaxy")}


def test_assigning_an_assigned_vm_is_409_naming_the_holder(app, client):
    """The second assign fails, says who holds it, and changes nothing."""
    assign(client)
    response = assign(client, user="other")
    assert response.status_code == 409
    assert response.json["message"] == "node 1 is assigned to zeppolo (app)"
    assert rows(app) == {"1": (ASSIGNED, "zeppolo", "app")}


def test_release_frees_and_destroys_the_vm(app, client):
    """Release frees the VM, then destroys it: "... and deleted", no fixed wait."""
    assign(client)
    response = client.put(RELEASE, json={"node": "1"})
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "id_vm": "1",
        "id": 1,
        "result": "Node 1 released and deleted",
    }
    assert node_names(client) == ["dummy-2"]
    assert rows(app) == {"1": (DELETED, None, "app")}
    assert client.get("/api/v1/vm/status/fake_driver").json["nodes"] == []


def test_release_can_keep_the_vm(make_app):
    """With RELEASE_KEEPS_NODE the VM stays, free for the next assign."""
    app = make_app(RELEASE_KEEPS_NODE=True)
    client = token_client(app)
    assign(client)
    response = client.put(RELEASE, json={"hostname": "dummy-1"})
    assert response.json["result"] == "Node 1 released"
    assert node_names(client) == ["dummy-1", "dummy-2"]
    assert rows(app) == {"1": (FREE, None, "app")}
    assert assign(client, user="next").status_code == 200


def test_releasing_a_free_vm_is_409(app, client):
    """A VM nobody holds cannot be released, and is not destroyed."""
    response = client.put(RELEASE, json={"node": "2"})
    assert response.status_code == 409
    assert response.json["message"] == "node 2 is free"
    assert node_names(client) == ["dummy-1", "dummy-2"]


@pytest.mark.parametrize("path", [ASSIGN, RELEASE])
def test_unknown_node_is_404(app, client, path):
    """A VM neither the ledger nor the cloud has is a 404; nothing is registered."""
    body = {"node": "99", "user": "u", "vm_type": "app"}
    response = client.put(path, json=body)
    assert response.status_code == 404
    assert response.json["message"] == "no useful node id here: 99"
    assert rows(app) == {}


def test_emulate_changes_nothing_and_says_what_would_happen(app, client):
    """A dry run resolves and checks, then answers without writing a row or a history line."""
    body = {"node": "1", "user": "zeppolo", "vm_type": "app", "emulate": True}
    response = client.put(ASSIGN, json=body)
    assert response.json == {
        "status": "ok",
        "id_vm": "1",
        "id": None,
        "result": "Node 1 would be assigned to zeppolo (emulated)",
    }
    assert rows(app) == {}
    assign(client)
    dry_release = client.put(RELEASE, json={"node": "1", "emulate": True})
    assert dry_release.json["result"] == "Node 1 would be released and deleted (emulated)"
    assert client.put(ASSIGN, json={**body, "user": "b"}).status_code == 409
    assert node_names(client) == ["dummy-1", "dummy-2"]
    assert rows(app) == {"1": (ASSIGNED, "zeppolo", "app")}
    assert history(app) == [("assign", "1", "ok")]


def test_history_records_every_outcome_newest_first(app, client):
    """Each assign and release is recorded with caller, user, vm_type, time and outcome."""
    assign(client)
    assign(client, user="late")
    client.put(RELEASE, json={"node": "1"})
    client.put(RELEASE, json={"node": "2"})
    entries = client.get("/api/v1/vm/history/fake_driver").json["history"]
    assert [(e["action"], e["id_vm"], e["user"], e["outcome"]) for e in entries] == [
        ("release", "2", None, "409"),
        ("release", "1", "zeppolo", "ok"),
        ("assign", "1", "late", "409"),
        ("assign", "1", "zeppolo", "ok"),
    ]
    assert {e["caller"] for e in entries} == {"tester"}
    assert entries[3]["vm_type"] == "app"
    assert entries[2]["message"] == "node 1 is assigned to zeppolo (app)"
    assert (entries[1]["vm_type"], entries[1]["message"]) == ("app", "Node 1 released and deleted")
    assert entries[0]["time"] >= entries[3]["time"]
    assert entries[0]["time"].endswith("+00:00")
    limited = client.get("/api/v1/vm/history/fake_driver", query_string={"limit": 2}).json
    assert [e["id"] for e in limited["history"]] == [e["id"] for e in entries[:2]]
    assert client.get("/api/v1/vm/history/default").json["history"] == []


def test_history_filtered_by_user_and_action_in_pages(app, client):
    """user (whose VM, or who asked) and action narrow the history; before pages it."""
    assign(client)
    assign(client, user="late")
    client.put(RELEASE, json={"node": "1"})
    path = "/api/v1/vm/history/fake_driver"

    def shown(**query):
        answer = client.get(path, query_string=query).json
        return [(e["action"], e["user"]) for e in answer["history"]], answer["next_before"]

    assert shown(action="assign") == ([("assign", "late"), ("assign", "zeppolo")], None)
    assert shown(user="late") == ([("assign", "late")], None)
    assert shown(user="tester", action="release") == ([("release", "zeppolo")], None)
    first, after = shown(limit=2)
    assert (first, shown(before=after)) == (
        [("release", "zeppolo"), ("assign", "late")],
        ([("assign", "zeppolo")], None),
    )
    assert shown(user="nobody") == ([], None)
    assert shown(action="reconcile") == ([], None)
    refused = client.get(path, query_string={"before": "0"})
    assert_error(refused, 400, "before: a whole number from 1 to 2147483647")
    unknown = client.get(path, query_string={"action": "assigned"})
    assert_error(
        unknown,
        400,
        "action: one of assign, release, stop, extend, create, promote, destroy, adopt, "
        "webhook, reconcile, check, override, request, serve, cancel, expire",
    )


@pytest.mark.parametrize("limit", ["0", "-1", "x", "1001", "9" * 5000])
def test_history_limit_must_be_sensible(client, limit):
    """A limit that is no whole number from 1 to 1000 is a 400 naming it."""
    response = client.get("/api/v1/vm/history/fake_driver", query_string={"limit": limit})
    assert response.status_code == 400
    assert response.json["message"] == "limit: a whole number from 1 to 1000"


def test_a_failing_delete_after_release_is_502_and_leaves_the_vm_free(app, client, monkeypatch):
    """Released but not destroyed: the answer says so, and the ledger keeps the VM free."""
    assign(client)
    with app.app_context():
        driver = clouds.get("fake_driver").driver
    monkeypatch.setattr(driver, "destroy_node", lambda node: False)
    response = client.put(RELEASE, json={"node": "1"})
    assert response.status_code == 502
    assert response.json["message"] == (
        "Node 1 released, but deleting it failed: fake_driver: the cloud did not destroy node 1"
    )
    assert rows(app) == {"1": (FREE, None, "app")}
    assert history(app)[-1] == ("release", "1", "502")
    with app.app_context():
        entry = db.session.scalars(db.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert (entry.user, entry.vm_type, entry.message) == (
            "zeppolo",
            "app",
            response.json["message"],
        )


def test_ledger_sync_mends_the_ledger(app, client):
    """ledger-sync, the reconcile's older name: the cloud's VM the ledger lacks recorded
    free, a vanished one marked deleted; neither is then listed nor assignable."""
    assign(client, hostname="dummy-2")
    with app.app_context():
        driver = clouds.get("fake_driver").driver
        driver.destroy_node(driver.list_nodes()[1])
    result = app.test_cli_runner().invoke(args=["ledger-sync", "--cloud", "fake_driver"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "orphan   fake_driver 1 (dummy-1) books -, cloud running, pool -: recorded FREE",
        "ghost    fake_driver 2 (dummy-2) books ASSIGNED, cloud -, pool -: marked DELETED",
        "1 orphans, 1 ghosts, 0 mismatches (applied)",
    ]
    assert rows(app) == {"2": (DELETED, None, "app"), "1": (FREE, None, None)}
    assert [n["id_vm"] for n in client.get("/api/v1/vm/status/fake_driver").json["nodes"]] == ["1"]
    response = assign(client, node="2")
    assert response.status_code == 404
    history = client.get("/api/v1/vm/history/fake_driver").json["history"]
    # Newest first: the refused assign, then the two fixes.
    assert [entry["action"] for entry in history[:3]] == ["assign", "reconcile", "reconcile"]


def test_ledger_sync_of_every_cloud(app):
    """Without --cloud every cloud is synced; a second run finds nothing to do."""
    runner = app.test_cli_runner()
    first = runner.invoke(args=["ledger-sync"])
    assert first.exit_code == 0
    assert first.output.splitlines()[-1] == "4 orphans, 0 ghosts, 0 mismatches (applied)"
    assert first.output.count("recorded FREE") == 4
    second = runner.invoke(args=["ledger-sync"])
    assert second.output == "0 orphans, 0 ghosts, 0 mismatches (applied)\n"


def test_vm_stop_retires_the_ledger_row(app, client):
    """A VM stopped through the API leaves the status listing."""
    assign(client)
    client.put("/api/v1/vm/stop/fake_driver", json={"node": "1", "force": True})
    assert rows(app)["1"][0] == DELETED
    assert client.get("/api/v1/vm/status/fake_driver").json["nodes"] == []


def test_stopping_an_assigned_vm_is_409_naming_the_holder(app, client):
    """vm/stop does not destroy a VM someone holds; the refusal is in the history."""
    assign(client)
    response = client.put("/api/v1/vm/stop/fake_driver", json={"hostname": "dummy-1"})
    assert response.status_code == 409
    assert response.json["message"] == (
        'node 1 is assigned to zeppolo (app): give "force": true to stop it anyway'
    )
    assert "dummy-1" in node_names(client)
    assert rows(app) == {"1": (ASSIGNED, "zeppolo", "app")}
    [entry] = client.get("/api/v1/vm/history/fake_driver").json["history"][:1]
    assert (entry["action"], entry["id_vm"], entry["user"], entry["outcome"]) == (
        "stop",
        "1",
        "zeppolo",
        "409",
    )


def test_a_forced_stop_ends_the_assignment_on_the_record(app, client):
    """With "force": true the VM goes; the history says whose it was and who forced it."""
    assign(client)
    response = client.put("/api/v1/vm/stop/fake_driver", json={"node": "1", "force": True})
    assert response.json == {"status": "ok", "result": "Node 1 deleted"}
    assert "dummy-1" not in node_names(client)
    assert rows(app)["1"][0] == DELETED
    entry = client.get("/api/v1/vm/history/fake_driver").json["history"][0]
    assert (entry["action"], entry["caller"], entry["user"], entry["vm_type"]) == (
        "stop",
        "tester",
        "zeppolo",
        "app",
    )
    assert entry["outcome"] == "ok"
    assert entry["message"] == (
        "Node 1 deleted; forced, it was node 1 is assigned to zeppolo (app)"
    )


def test_stopping_a_free_vm_needs_no_force_and_no_history(app, client):
    """A VM nobody holds is stopped as before, and the history stays about assignments."""
    assign(client)
    client.put(RELEASE, json={"node": "1"})
    before = history(app)
    response = client.put("/api/v1/vm/stop/fake_driver", json={"node": "2"})
    assert response.json == {"status": "ok", "result": "Node 2 deleted"}
    assert history(app) == before


def test_force_must_be_a_boolean(client):
    response = client.put("/api/v1/vm/stop/fake_driver", json={"node": "1", "force": "yes"})
    assert response.status_code == 400
    assert response.json["message"] == "force: true or false"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"node": "1", "vm_type": "app"}, "missing field: 'user'"),
        ({"node": "1", "user": "u"}, "missing field: 'vm_type'"),
        ({"node": "1", "user": "", "vm_type": "app"}, "user: non-empty string"),
        (
            {"node": "1", "hostname": "h", "user": "u", "vm_type": "app"},
            "node, hostname: give one of them, not both",
        ),
        ({"node": "1", "user": "u", "vm_type": "app", "emulate": "yes"}, "emulate: true or false"),
    ],
)
def test_bad_assign_bodies_are_400_naming_the_field(client, body, message):
    """Assign bodies missing or mistyping a field get a 400 that names it."""
    response = client.put(ASSIGN, json=body)
    assert response.status_code == 400
    assert response.json["message"] == message


def test_an_assign_naming_no_vm_and_no_pool_is_404_naming_the_vm_type(client):
    """Without node and hostname an assign takes from the warm pool of its vm_type; with no
    such pool it is a 404 that begins with the original's words and names the vm_type."""
    response = client.put(ASSIGN, json={"user": "u", "vm_type": "app"})
    assert_error(
        response, 404, "no valid node id nor hostname here, and no pool serves vm_type app"
    )


def test_assign_and_release_need_role_agent(app, client):
    """A reader sees the status and history but cannot assign or release."""
    reader = token_client(app, "reader", roles=())
    assert reader.put(ASSIGN, json={"node": "1", "user": "u", "vm_type": "a"}).status_code == 403
    assert reader.put(RELEASE, json={"node": "1"}).status_code == 403
    assert reader.get("/api/v1/vm/status/fake_driver").status_code == 200
    assert reader.get("/api/v1/vm/history/fake_driver").status_code == 200
    assert rows(app) == {}


def test_unknown_backend_stops_the_start(make_app):
    """An ASSIGNMENT_BACKEND that is neither local nor cistern is refused at start."""
    with pytest.raises(ConfigurationError, match="ASSIGNMENT_BACKEND='ledger'"):
        make_app(ASSIGNMENT_BACKEND="ledger")
