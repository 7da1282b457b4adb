"""An admin's override of a warm pool at runtime, on SQLite and PostgreSQL: PATCH and
DELETE /api/v1/pools/<name> and what GET shows after them, their history, a release while
the pool drains, the commands, concurrent PATCHes, and an override outliving its app."""

import threading

import pytest
import sqlalchemy
from conftest import SQLITE_ONLY, assert_error, token_client

from dispatcher import clouds, pools
from dispatcher.extensions import db
from dispatcher.models import DELETED, FREE, Assignment, AuditEntry, PoolOverride
from dispatcher.worker import pool_pass

ASSIGN = "/api/v1/vm/action/assign"
RELEASE = "/api/v1/vm/action/release"
WEB_URL = "/api/v1/pools/web"
# The pool web on both Dummy clouds: 2 ready, at most 3, its released VMs kept free.
WEB = {
    "clouds": [
        {"cloud": "default", "image": "1", "size": "1"},
        {"cloud": "fake_driver", "image": "1", "size": "1"},
    ],
    "min_ready": 2,
    "max_total": 3,
    "release": "reuse",
}
FIELDS = "auth_token, draining, max_total, min_ready, paused"


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


@pytest.fixture
def app(make_app):
    return make_app(POOLS={"web": WEB})


@pytest.fixture
def admin(app):
    return token_client(app, "boss", roles=("admin",))


def row(app) -> tuple | None:
    """The override row of web: (min_ready, max_total, paused, draining, set_by), or None."""
    with app.app_context():
        found = db.session.get(PoolOverride, "web")
        if found is None:
            return None
        return (found.min_ready, found.max_total, found.paused, found.draining, found.set_by)


def overrides_recorded(app) -> list[tuple]:
    """The history's override entries: (cloud, caller, vm_type, outcome, message), in order."""
    with app.app_context():
        found = db.session.scalars(
            sqlalchemy.select(AuditEntry)
            .where(AuditEntry.action == "override")
            .order_by(AuditEntry.id)
        )
        return [
            (entry.cloud, entry.caller, entry.vm_type, entry.outcome, entry.message)
            for entry in found
        ]


def sizes(shown: dict) -> tuple:
    """What a pool's answer says of its sizes and flags."""
    return (
        shown["min_ready"],
        shown["max_total"],
        shown["configured"],
        shown["paused"],
        shown["draining"],
    )


# -- PATCH, GET and DELETE ----------------------------------------------------------------


def test_a_pool_without_an_override_shows_its_configured_values(admin):
    shown = admin.get(WEB_URL).json["pool"]
    configured = {"min_ready": 2, "max_total": 3}
    assert sizes(shown) == (2, 3, configured, False, False)
    assert shown["override"] is None
    assert admin.get("/api/v1/pools").json["pools"][0]["override"] is None


def test_a_patch_overrides_the_pool_for_every_reader_of_it(app, admin):
    patched = admin.patch(WEB_URL, json={"min_ready": 3, "paused": True})

    assert patched.status_code == 200, patched.json
    shown = admin.get(WEB_URL).json["pool"]
    assert patched.json["pool"] == shown
    assert sizes(shown) == (3, 3, {"min_ready": 2, "max_total": 3}, True, False)
    override = dict(shown["override"])
    assert override.pop("time").endswith("+00:00")
    assert override == {
        "min_ready": 3,
        "max_total": None,
        "paused": True,
        "draining": False,
        "set_by": "boss",
    }
    # Every field of GET is still there, and the listing shows the same.
    assert {"booting", "free", "assigned", "faulty", "clouds", "leases"} <= set(shown)
    listed = admin.get("/api/v1/pools").json["pools"][0]
    assert listed == {key: value for key, value in shown.items() if key != "leases"}
    assert row(app) == (3, None, True, False, "boss")
    with app.app_context():
        assert pools.overrides.applied(pools.get("web")).min_ready == 3


def test_a_patch_merges_into_the_override_and_null_gives_back_the_configured_size(app, admin):
    admin.patch(WEB_URL, json={"min_ready": 1, "max_total": 10})
    admin.patch(WEB_URL, json={"draining": True})
    assert row(app) == (1, 10, False, True, "boss")

    cleared = admin.patch(WEB_URL, json={"max_total": None, "min_ready": 0})

    assert cleared.status_code == 200
    assert sizes(cleared.json["pool"]) == (0, 3, {"min_ready": 2, "max_total": 3}, False, True)
    assert row(app) == (0, None, False, True, "boss")


def test_a_patch_that_leaves_nothing_overridden_removes_the_override(app, admin):
    admin.patch(WEB_URL, json={"min_ready": 1, "paused": True})

    undone = admin.patch(WEB_URL, json={"min_ready": None, "paused": False})

    assert undone.status_code == 200
    assert undone.json["pool"]["override"] is None
    assert sizes(undone.json["pool"]) == (2, 3, {"min_ready": 2, "max_total": 3}, False, False)
    assert row(app) is None


def test_delete_gives_back_the_configured_values_and_a_second_delete_is_a_404(app, admin):
    admin.patch(WEB_URL, json={"max_total": 8, "draining": True})

    deleted = admin.delete(WEB_URL)

    assert deleted.status_code == 200
    assert deleted.json["result"] == "pool web: override cleared"
    assert deleted.json["pool"] == admin.get(WEB_URL).json["pool"]
    assert deleted.json["pool"]["override"] is None
    assert sizes(deleted.json["pool"]) == (2, 3, {"min_ready": 2, "max_total": 3}, False, False)
    assert row(app) is None
    assert_error(admin.delete(WEB_URL), 404, "pool web has no override")


def test_an_unknown_pool_is_a_404_and_only_admins_change_a_pool(app, admin):
    unknown = admin.patch("/api/v1/pools/nowhere", json={"paused": True})
    assert_error(unknown, 404, "Unknown pool: nowhere")
    assert_error(admin.delete("/api/v1/pools/nowhere"), 404, "Unknown pool: nowhere")
    agent = token_client(app, "ada", roles=("agent",))
    refused = agent.patch(WEB_URL, json={"paused": True})
    assert refused.status_code == 403
    assert refused.json["status"] == "error" and refused.json["status_code"] == 403
    assert agent.delete(WEB_URL).status_code == 403
    assert app.test_client().patch(WEB_URL, json={"paused": True}).status_code == 401
    assert row(app) is None
    assert agent.get(WEB_URL).status_code == 200  # reading stays open to any token


WHOLE = "a whole number from {} to 10000"
TOKEN = "the admin's token"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "Malformed JSON stream"),
        ([{"paused": True}], "Malformed JSON stream: the body must be a JSON object"),
        ("5", "Malformed JSON stream: the body must be a JSON object"),
        ({}, "empty body: give one or more of min_ready, max_total, paused, draining"),
        # The token in the body (where the token check reads it too) changes nothing.
        (
            {"auth_token": TOKEN},
            "empty body: give one or more of min_ready, max_total, paused, draining",
        ),
        ({"min_ready": "5"}, f"min_ready: {WHOLE.format(0)}"),
        ({"min_ready": 10**30}, f"min_ready: {WHOLE.format(0)}"),
        ({"min_ready": 2.5}, f"min_ready: {WHOLE.format(0)}"),
        ({"min_ready": True}, f"min_ready: {WHOLE.format(0)}"),
        ({"min_ready": -1}, f"min_ready: {WHOLE.format(0)}"),
        ({"max_total": 0}, f"max_total: {WHOLE.format(1)}"),
        ({"max_total": 10001}, f"max_total: {WHOLE.format(1)}"),
        ({"max_total": [3]}, f"max_total: {WHOLE.format(1)}"),
        ({"paused": 1}, "paused: true or false"),
        ({"paused": None}, "paused: true or false"),
        ({"draining": "yes"}, "draining: true or false"),
        ({"size": 3, "paused": True}, f"size: not a field here ({FIELDS})"),
        # The min_ready in force never above the max_total in force.
        ({"min_ready": 4}, "min_ready: 4 would be more than max_total (3)"),
        ({"max_total": 1}, "min_ready: 2 would be more than max_total (1)"),
        ({"min_ready": 20, "max_total": 10}, "min_ready: 20 would be more than max_total (10)"),
    ],
)
@SQLITE_ONLY
def test_a_bad_body_is_a_400_naming_the_field(app, admin, body, message):
    if body == {"auth_token": TOKEN}:
        body = {"auth_token": admin.environ_base["HTTP_X_AUTH_TOKEN"]}
    if isinstance(body, str):
        sent = admin.patch(WEB_URL, data=body, content_type="application/json")
    else:
        sent = admin.patch(WEB_URL, json=body)
    assert_error(sent, 400, message)
    assert row(app) is None
    assert overrides_recorded(app) == []


def test_a_size_beyond_the_configured_one_is_checked_against_the_override_in_force(admin):
    assert admin.patch(WEB_URL, json={"max_total": 10}).status_code == 200
    assert admin.patch(WEB_URL, json={"min_ready": 10}).status_code == 200
    assert_error(
        admin.patch(WEB_URL, json={"max_total": None}),
        400,
        "min_ready: 10 would be more than max_total (3)",
    )
    assert sizes(admin.get(WEB_URL).json["pool"])[:2] == (10, 10)


def test_a_patch_with_an_idempotency_key_runs_once(app, admin):
    headers = {"Idempotency-Key": "pause-web"}
    first = admin.patch(WEB_URL, json={"paused": True}, headers=headers)
    admin.patch(WEB_URL, json={"paused": False})
    again = admin.patch(WEB_URL, json={"paused": True}, headers=headers)

    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert row(app) is None  # the repeat did not pause the pool again


# -- the history ---------------------------------------------------------------------------


def test_each_change_is_in_the_history_of_each_cloud_of_the_pool(app, admin):
    admin.patch(WEB_URL, json={"min_ready": 3, "max_total": 5, "paused": True})
    admin.patch(WEB_URL, json={"paused": False, "draining": True})
    admin.delete(WEB_URL)

    messages = [
        "pool web: min_ready 3 (configured 2), max_total 5 (configured 3), paused",
        "pool web: min_ready 3 (configured 2), max_total 5 (configured 3), draining",
        "pool web: override cleared, configured values apply",
    ]
    assert overrides_recorded(app) == [
        (cloud, "boss", "web", "ok", message)
        for message in messages
        for cloud in ("default", "fake_driver")
    ]
    history = admin.get("/api/v1/vm/history/fake_driver", query_string={"action": "override"})
    assert [entry["message"] for entry in history.json["history"]] == messages[::-1]


# -- a release while the pool drains ---------------------------------------------------------


def assigned_vm(app, client) -> str:
    """Fill web with two passes, assign one of its VMs; the VM's id."""
    with app.app_context():
        pool_pass.run(pools.every())
        pool_pass.run(pools.every())
    assigned = client.put(ASSIGN, json={"vm_type": "web", "user": "u"})
    assert assigned.status_code == 200, assigned.json
    assert assigned.json["cloud"] == "default"
    return assigned.json["id_vm"]


def ledger_status(app, id_vm: str) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                sqlalchemy.select(Assignment.status).where(
                    Assignment.cloud == "default", Assignment.id_vm == id_vm
                )
            )
        )


def dummy_node_ids(app) -> list[str]:
    with app.app_context():
        return sorted(str(node.id) for node in clouds.get("default").driver.list_nodes())


def test_a_released_vm_of_a_draining_reuse_pool_is_destroyed(app, admin):
    id_vm = assigned_vm(app, admin)
    assert admin.patch(WEB_URL, json={"draining": True}).status_code == 200

    released = admin.put(RELEASE, json={"node": id_vm})

    assert released.status_code == 200, released.json
    assert released.json["result"] == f"Node {id_vm} released and deleted"
    assert id_vm not in dummy_node_ids(app)
    assert ledger_status(app, id_vm) == [DELETED]


def test_a_released_vm_of_a_reuse_pool_stays_free_when_not_draining(app, admin):
    id_vm = assigned_vm(app, admin)
    assert admin.patch(WEB_URL, json={"paused": True, "min_ready": 0}).status_code == 200

    released = admin.put(RELEASE, json={"node": id_vm})

    assert released.json["result"] == f"Node {id_vm} released"
    assert id_vm in dummy_node_ids(app)
    assert ledger_status(app, id_vm) == [FREE]


# -- the commands --------------------------------------------------------------------------


def test_the_commands_set_pause_resume_drain_and_reset_an_override(app, admin):
    runner = app.test_cli_runner()

    def run(*args, code=0):
        result = runner.invoke(args=["pools", *args])
        assert result.exit_code == code, result.output
        return result.output

    assert run("set", "web", "--min-ready", "3", "--max-total", "6") == (
        "pool web: min_ready 3 (configured 2), max_total 6 (configured 3)\n"
    )
    assert row(app) == (3, 6, False, False, "command line")
    assert run("pause", "web") == (
        "pool web: min_ready 3 (configured 2), max_total 6 (configured 3), paused\n"
    )
    assert run("drain", "web").endswith("(configured 3), paused, draining\n")
    assert row(app) == (3, 6, True, True, "command line")
    status = run("status").splitlines()
    assert status[1].split()[:3] == ["web", "3", "6"]
    assert status[1].endswith(
        "min_ready 3 (configured 2), max_total 6 (configured 3), paused, draining"
    )
    assert run("resume", "web") == (
        "pool web: min_ready 3 (configured 2), max_total 6 (configured 3)\n"
    )
    assert run("set", "web", "--max-total", "none") == ("pool web: min_ready 3 (configured 2)\n")
    assert row(app) == (3, None, False, False, "command line")
    assert run("reset", "web") == "pool web: override cleared, configured values apply\n"
    assert row(app) is None
    assert admin.get(WEB_URL).json["pool"]["override"] is None
    callers = {caller for _, caller, *_ in overrides_recorded(app)}
    assert callers == {"command line"}
    assert len(overrides_recorded(app)) == 2 * 6


def test_the_commands_say_what_is_wrong_in_one_line(app):
    runner = app.test_cli_runner()

    def error(*args, code=1):
        result = runner.invoke(args=["pools", *args])
        assert result.exit_code == code, result.output
        return result.output.strip().splitlines()[-1]

    assert error("reset", "web") == "Error: pool web has no override"
    assert error("pause", "nowhere") == "Error: Unknown pool: nowhere"
    assert error("set", "web", "--min-ready", "5") == (
        "Error: min_ready: 5 would be more than max_total (3)"
    )
    assert error("set", "web", "--max-total", "0") == (
        "Error: max_total: a whole number from 1 to 10000"
    )
    assert "a whole number, or none" in error("set", "web", "--min-ready", "1.5", code=2)
    assert "give --min-ready, --max-total or both" in error("set", "web", code=2)
    assert row(app) is None


# -- concurrency and restarts ------------------------------------------------------------------


def test_concurrent_patches_of_one_pool_all_apply_one_after_the_other(app):
    """Sixteen threads, each with its own connection, PATCH web at once, each a field of
    its own: none fails, one row holds all of them."""
    token_client(app, "boss", roles=("admin",))
    bodies = [{"paused": True}, {"draining": True}, {"max_total": 9}, {"min_ready": 1}] * 4
    clients = [token_client(app, "boss", roles=("admin",)) for _ in bodies]
    start = threading.Barrier(len(clients))
    statuses = []

    def race(client, body):
        start.wait()
        statuses.append(client.patch(WEB_URL, json=body).status_code)

    threads = [
        threading.Thread(target=race, args=pair) for pair in zip(clients, bodies, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * len(bodies)
    assert row(app) == (1, 9, True, True, "boss")
    with app.app_context():
        assert db.session.scalar(sqlalchemy.select(sqlalchemy.func.count(PoolOverride.pool))) == 1
    assert len(overrides_recorded(app)) == 2 * len(bodies)


def test_an_override_outlives_its_app_and_follows_a_changed_pools(make_app, app, admin):
    admin.patch(WEB_URL, json={"min_ready": 3, "draining": True})

    restarted = make_app(POOLS={"web": WEB})
    shown = token_client(restarted, "boss", roles=("admin",)).get(WEB_URL).json["pool"]
    assert sizes(shown) == (3, 3, {"min_ready": 2, "max_total": 3}, False, True)
    assert shown["override"]["set_by"] == "boss"

    # POOLS since made smaller than the override's min_ready: the max_total caps it.
    smaller = make_app(POOLS={"web": {**WEB, "min_ready": 1, "max_total": 2}})
    shown = token_client(smaller, "boss", roles=("admin",)).get(WEB_URL).json["pool"]
    assert sizes(shown) == (2, 2, {"min_ready": 1, "max_total": 2}, False, True)
    assert shown["override"]["min_ready"] == 3
