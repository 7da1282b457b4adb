"""Warm pools on libcloud's Dummy cloud: the configuration, the pool manager's pass, assign
by vm_type, release by the pool's policy, the pools' status. (moto's EC2, gunicorn and
PostgreSQL: test_pools_ec2.py and test_pools_concurrency.py.)"""

import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy
from conftest import (
    ScriptedCloud,
    assert_error,
    ec2_cloud,
    metric,
    postgresql_schema,
    prepare_database,
    token_client,
)
from helpers import EC2_NAMESPACE, NO_INSTANCES
from libcloud.compute.types import NodeState

from dispatcher import clouds, create_app, pools
from dispatcher.bookkeeping import ledger
from dispatcher.config import DUMMY_FARM
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.locks import one_at_a_time
from dispatcher.models import (
    ASSIGNED,
    BOOTING,
    DELETED,
    FAULTY,
    FREE,
    RESERVED,
    Assignment,
    AuditEntry,
    ReconcileSurvey,
)
from dispatcher.pools import passes
from dispatcher.pools.events import CALLER, PoolReport
from dispatcher.pools.status import level_to_dict
from dispatcher.worker import pool_pass

ASSIGN = "/api/v1/vm/action/assign"
RELEASE = "/api/v1/vm/action/release"
# A pool's cloud entry in POOL: default, with two free VMs and no failure.
DEFAULT_CLOUD_WITH_TWO_FREE = {
    "cloud": "default",
    "booting": 0,
    "free": 2,
    "reserved": 0,
    "assigned": 0,
    "faulty": 0,
    "last_error": None,
}
WEB = {"clouds": [{"cloud": "default", "image": "1", "size": "1"}], "min_ready": 2, "max_total": 3}


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


def pool(**changes) -> dict:
    return {"web": {**WEB, **changes}}


def run_pass(app, *names) -> list[PoolReport]:
    with app.app_context():
        selected = [pools.get(name) for name in names] if names else pools.every()
        return pool_pass.run(selected)


def rows(app, pool_name="web") -> list[tuple]:
    """The pool's rows that are not deleted: (cloud, id_vm, status), by id."""
    with app.app_context():
        found = db.session.scalars(
            sqlalchemy.select(Assignment)
            .where(Assignment.pool == pool_name, Assignment.status != DELETED)
            .order_by(Assignment.id)
        )
        return [(row.cloud, row.id_vm, row.status) for row in found]


def manager_history(app) -> list[tuple]:
    with app.app_context():
        found = db.session.scalars(
            sqlalchemy.select(AuditEntry).where(AuditEntry.caller == CALLER).order_by(AuditEntry.id)
        )
        return [(entry.action, entry.id_vm, entry.outcome) for entry in found]


def dummy_node_ids(app, cloud="default") -> list[str]:
    with app.app_context():
        return sorted(str(node.id) for node in clouds.get(cloud).driver.list_nodes())


@pytest.fixture
def warm(make_app):
    """An app with the pool web (2 ready, at most 3) on the Dummy cloud default, filled."""
    app = make_app(POOLS=pool())
    run_pass(app)
    run_pass(app)
    return app


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"POOLS": pool(clouds=[{"cloud": "nowhere", "image": "1", "size": "1"}])},
            "POOLS['web']['clouds'][0]: cloud 'nowhere' is not in CLOUD_FARM",
        ),
        (
            {"POOLS": pool(clouds=[{"cloud": "default", "size": "1"}])},
            "POOLS['web']['clouds'][0]: image is missing",
        ),
        (
            {"POOLS": pool(clouds=[{"cloud": "default", "image": "1"}])},
            "POOLS['web']['clouds'][0]: size is missing",
        ),
        (
            {"POOLS": pool(min_ready=4, max_total=3)},
            "POOLS['web']: min_ready (4) is more than max_total (3)",
        ),
        (
            {"POOLS": pool(spare=1)},
            "POOLS['web']: unknown key 'spare' "
            "(known: boot_timeout, clouds, demand, forecast, lease, max_age, max_lease, "
            "max_total, min_ready, ready_check, recheck_failures, recheck_seconds, release, "
            "require_tags, schedule, timezone, webhook_url)",
        ),
        (
            {"POOLS": pool(clouds=[{"cloud": "default", "image": "1", "size": "1", "flavor": 2}])},
            "POOLS['web']['clouds'][0]: unknown key 'flavor' (known: cloud, image, keyname, "
            "location, metadata, price_per_hour, security_groups, size)",
        ),
        *(
            (
                {"POOLS": pool(clouds=[{"cloud": "default", "image": "1", "size": size}])},
                "POOLS['web']['clouds'][0]: size must be a size or a non-empty list of sizes",
            )
            for size in ("", [], (), ["1", ""], ["1", 2], 1, None, {"1": "2"})
        ),
        (
            {"POOLS": pool(clouds=[{"cloud": "default", "image": "1", "size": ["1", "2", "1"]}])},
            "POOLS['web']['clouds'][0]: size names '1' twice",
        ),
        ({"POOLS": pool(release="keep")}, "POOLS['web']: release must be one of destroy, reuse"),
        (
            {"POOLS": pool(min_ready=-1)},
            "POOLS['web']: min_ready must be a whole number from 0",
        ),
        (
            {"POOLS": {"we b": WEB}},
            "POOLS: 'we b' is not a pool name (letters, digits, '_', '.', '-'; up to 40)",
        ),
        (
            {"POOLS": pool(), "ASSIGNMENT_BACKEND": "cistern"},
            "POOLS needs the local ledger (ASSIGNMENT_BACKEND='local'), not 'cistern': "
            "the pool manager keeps its VMs there",
        ),
    ],
)
def test_a_pool_that_cannot_work_is_a_one_line_error_naming_the_pool_and_key(settings, message):
    with pytest.raises(ConfigurationError) as caught:
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", **settings})
    assert str(caught.value) == message


def test_size_is_one_size_or_a_list_of_sizes_tried_in_order(make_app):
    entries = [
        {"cloud": "default", "image": "1", "size": "1"},
        {"cloud": "fake_driver", "image": "1", "size": ["3", "1", "2"]},
    ]
    app = make_app(POOLS=pool(clouds=entries))
    with app.app_context():
        assert [entry.size for entry in pools.get("web").clouds] == [("1",), ("3", "1", "2")]


def test_one_size_keeps_the_template_its_vms_were_made_with(make_app):
    """Each VM records the template of its cloud entry (the fingerprint of what it is made
    from): one size, as a text or a list of one, has the template it had before sizes could
    be lists, so that no VM is outdated by the upgrade; a list of several is another."""
    before_lists = "a56cf66efca0151fa121be70dff0ce2e"  # image "1", size "1", nothing else
    entries = [
        {"cloud": "default", "image": "1", "size": "1"},
        {"cloud": "fake_driver", "image": "1", "size": ["1"]},
    ]
    several = [{"cloud": "default", "image": "1", "size": ["1", "2"]}]
    app = make_app(POOLS={"web": {**WEB, "clouds": entries}, "app": {**WEB, "clouds": several}})
    with app.app_context():
        assert pools.get("web").templates == {"default": before_lists, "fake_driver": before_lists}
        assert pools.get("app").templates["default"] != before_lists


# -- the pool manager's pass -------------------------------------------------------------


def test_a_pass_creates_the_deficit_as_booting_and_the_next_promotes_them(make_app):
    """First pass: min_ready VMs created, booting (never handed out); second: running, so
    free with their addresses. Each step is in the history with caller pool-manager."""
    app = make_app(POOLS=pool())
    client = token_client(app)

    [report] = run_pass(app)

    assert (report.created, report.promoted) == (2, 0)
    assert rows(app) == [("default", "3", BOOTING), ("default", "4", BOOTING)]
    assert dummy_node_ids(app) == ["1", "2", "3", "4"]
    booting = client.put(ASSIGN, json={"vm_type": "web", "user": "u"})
    assert_error(booting, 503, "pool web has no free VM now: 2 booting")
    by_node = client.put(ASSIGN, json={"node": "3", "vm_type": "web", "user": "u"})
    assert_error(by_node, 409, "node 3 is booting for a warm pool")
    assert client.get("/api/v1/vm/status").json["nodes"] == []  # the Cistern shape: no BOOTING

    [report] = run_pass(app)

    assert (report.created, report.promoted) == (0, 2)
    assert rows(app) == [("default", "3", FREE), ("default", "4", FREE)]
    assert manager_history(app) == [
        ("create", "3", "ok"),
        ("create", "4", "ok"),
        ("promote", "3", "ok"),
        ("promote", "4", "ok"),
    ]
    assert [row["status"] for row in client.get("/api/v1/vm/status").json["nodes"]] == [1, 1]


def test_assign_by_type_takes_a_free_vm_and_answers_where_it_is(warm):
    client = token_client(warm)

    response = client.put(ASSIGN, json={"vm_type": "web", "user": "alice"})

    assert response.status_code == 200, response.json
    assert response.json == {
        "status": "ok",
        "id_vm": "3",
        "id": 1,
        "result": "Node 3 assigned",
        "cloud": "default",
        "hostname": "dummy-3",
        "public_ips": ["127.0.0.3"],
        "private_ips": [],
    }
    assert rows(warm) == [("default", "3", ASSIGNED), ("default", "4", FREE)]
    with warm.app_context():
        row = db.session.get(Assignment, 1)
        assert (row.user, row.recipe) == ("alice", "web")
    history = client.get("/api/v1/vm/history").json["history"][0]
    assert (history["action"], history["caller"], history["user"], history["vm_type"]) == (
        "assign",
        "tester",
        "alice",
        "web",
    )


def test_an_empty_pool_is_503_with_retry_after_and_the_last_failure(make_app, refusing_port):
    """Every VM taken and the refill failing: 503, Retry-After, how many boot, and when and
    why the last refill failed; never a VM of another pool."""
    farm = {**DUMMY_FARM, "broken": ec2_cloud(refusing_port)}
    other = {
        "clouds": [{"cloud": "fake_driver", "image": "1", "size": "1"}],
        "min_ready": 1,
        "max_total": 1,
    }
    app = make_app(
        CLOUD_FARM=farm,
        POOLS={
            "web": {**WEB, "clouds": [{"cloud": "broken", "image": "ami-1", "size": "t2.micro"}]},
            "other": other,
        },
        POOLS_INTERVAL=7,
    )
    run_pass(app)
    run_pass(app)
    assert rows(app, "other") == [("fake_driver", "3", FREE)]
    client = token_client(app)

    response = client.put(ASSIGN, json={"vm_type": "web", "user": "u"})

    body = assert_error(
        response,
        503,
        "pool web has no free VM now: 0 booting; the last refill failed at ",
        prefix=True,
    )
    assert body["message"].endswith(
        "on broken: listing its nodes failed: broken: Connection refused"
    )
    assert response.headers["Retry-After"] == "7"
    assert "loopback-secret-never-shown" not in response.get_data(as_text=True)
    assert rows(app, "other") == [("fake_driver", "3", FREE)]


def test_retry_after_is_whole_seconds_whatever_the_interval(make_app):
    """HTTP's Retry-After takes whole seconds: a manager every half second says 1."""
    app = make_app(POOLS=pool(), POOLS_INTERVAL=0.5)
    response = token_client(app).put(ASSIGN, json={"vm_type": "web", "user": "u"})
    assert_error(response, 503, "pool web has no free VM now: 0 booting")
    assert response.headers["Retry-After"] == "1"


def test_assign_by_type_on_a_named_cloud(make_app):
    both = [
        {"cloud": "default", "image": "1", "size": "1"},
        {"cloud": "fake_driver", "image": "1", "size": "1"},
    ]
    app = make_app(POOLS=pool(clouds=both, min_ready=1))
    run_pass(app)
    run_pass(app)
    client = token_client(app)
    assert rows(app) == [("default", "3", FREE)]

    elsewhere = client.put(f"{ASSIGN}/fake_driver", json={"vm_type": "web", "user": "u"})
    assert_error(elsewhere, 503, "pool web has no free VM on cloud fake_driver now: 0 booting")
    unknown = client.put(f"{ASSIGN}/nowhere", json={"vm_type": "web", "user": "u"})
    assert_error(unknown, 404, "Unknown cloud: nowhere")
    here = client.put(f"{ASSIGN}/default", json={"vm_type": "web", "user": "u"})
    assert (here.status_code, here.json["cloud"], here.json["id_vm"]) == (200, "default", "3")


def test_a_cloud_the_pool_does_not_use_is_404(warm):
    response = token_client(warm).put(f"{ASSIGN}/fake_driver", json={"vm_type": "web", "user": "u"})
    assert_error(response, 404, "pool web keeps no VMs on cloud fake_driver")


def test_an_emulated_assign_by_type_changes_nothing(warm):
    client = token_client(warm)
    response = client.put(ASSIGN, json={"vm_type": "web", "user": "u", "emulate": True})
    assert response.json["result"] == "Node 3 would be assigned to u (emulated)"
    assert rows(warm) == [("default", "3", FREE), ("default", "4", FREE)]


def test_max_total_caps_the_refill_over_every_state(warm):
    client = token_client(warm)
    for user in ("a", "b"):
        assert client.put(ASSIGN, json={"vm_type": "web", "user": user}).status_code == 200

    [report] = run_pass(warm)

    assert report.created == 1  # 2 assigned + 1 = max_total 3, short of 2 free
    run_pass(warm)
    assert [status for *_, status in rows(warm)] == [ASSIGNED, ASSIGNED, FREE]
    assert run_pass(warm)[0].created == 0


def test_release_destroys_a_pooled_vm_and_the_next_pass_refills(warm):
    client = token_client(warm)
    assert client.put(ASSIGN, json={"vm_type": "web", "user": "u"}).json["id_vm"] == "3"

    released = client.put(RELEASE, json={"node": "3"})

    assert released.json["result"] == "Node 3 released and deleted"
    assert dummy_node_ids(warm) == ["1", "2", "4"]
    assert rows(warm) == [("default", "4", FREE)]
    # libcloud's Dummy would number the next node 4 again, which the ledger holds: the
    # refill fails there and says why, and nothing of the ledger is overwritten.
    [report] = run_pass(warm)
    assert report.problems == [
        "default: creating a VM failed: default gave the new VM the id 4, which a VM of the "
        "ledger has"
    ]
    assert rows(warm) == [("default", "4", FREE)]


def test_release_of_a_reused_pool_puts_the_vm_back(make_app):
    app = make_app(POOLS=pool(release="reuse"))
    run_pass(app)
    run_pass(app)
    client = token_client(app)
    assert client.put(ASSIGN, json={"vm_type": "web", "user": "u"}).json["id_vm"] == "3"

    released = client.put(RELEASE, json={"node": "3"})

    assert released.json["result"] == "Node 3 released"
    assert dummy_node_ids(app) == ["1", "2", "3", "4"]
    assert rows(app) == [("default", "3", FREE), ("default", "4", FREE)]
    assert client.put(ASSIGN, json={"vm_type": "web", "user": "v"}).status_code == 200


def test_vms_gone_from_the_cloud_or_not_up_in_time_are_retired(make_app):
    """A free VM someone destroyed behind the dispatcher's back, and a booting VM past its
    boot_timeout: marked faulty, destroyed where they still exist, deleted in the ledger."""
    app = make_app(POOLS=pool(min_ready=1, max_total=2, boot_timeout=60))
    run_pass(app)
    run_pass(app)
    run_pass(app, "web")
    with app.app_context():
        driver = clouds.get("default").driver
        listed = {str(node.id): node for node in driver.list_nodes()}
        driver.destroy_node(listed["3"])
        listed["2"].state = NodeState.PENDING  # never comes up
        late = Assignment(
            cloud="default", id_vm="2", hostname="dummy-2", pool="web", status=BOOTING
        )
        late.created_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=61)
        db.session.add(late)
        db.session.commit()

    [report] = run_pass(app)

    assert report.destroyed == 2
    # Node 2 destroyed, node 3 gone already; then the refill's new node, which libcloud's
    # Dummy numbers 2 again (the ledger's deleted row of 2 is taken over).
    assert rows(app) == [("default", "2", BOOTING)]
    assert manager_history(app)[-3:] == [
        ("destroy", "3", "ok"),
        ("destroy", "2", "ok"),
        ("create", "2", "ok"),
    ]
    with app.app_context():
        messages = db.session.scalars(
            sqlalchemy.select(AuditEntry.message).where(AuditEntry.action == "destroy")
        ).all()
    assert sorted(messages) == [
        "Node 2 not running 60 s after its creation: destroyed",
        "Node 3 gone from its cloud; not in the cloud, nothing to destroy",
    ]


def test_vms_set_aside_for_a_request_are_the_requests_until_gone_from_their_cloud(make_app):
    """Set aside, a pool's VMs are neither free nor retired as its surplus (the refill makes
    free ones beside them); one gone from its cloud or in error there is retired as a free
    one would be."""
    app = make_app(POOLS=pool(min_ready=2, max_total=4))
    run_pass(app)
    run_pass(app)
    with app.app_context():
        assert ledger.set_aside("web", ["default"], 9, 2) == 2
        db.session.commit()
        reserved = [id_vm for _, id_vm, status in rows(app) if status == RESERVED]
    assert len(reserved) == 2

    run_pass(app)  # two more made beside them
    run_pass(app)  # free

    assert sorted(status for _, _, status in rows(app)) == [FREE, FREE, RESERVED, RESERVED]
    with app.app_context():
        shown = pools.pool_to_dict(pools.get("web"))
        assert (shown["free"], shown["reserved"], shown["current"]) == (2, 2, 4)
        assert shown["clouds"][0]["reserved"] == 2
        driver = clouds.get("default").driver
        listed = {str(node.id): node for node in driver.list_nodes()}
        driver.destroy_node(listed[reserved[0]])
        listed[reserved[1]].state = NodeState.ERROR

    [report] = run_pass(app)

    assert report.destroyed == 2
    with app.app_context():
        assert ledger.set_aside_counts(9) == {}
        messages = db.session.scalars(
            sqlalchemy.select(AuditEntry.message).where(AuditEntry.action == "destroy")
        ).all()
        levels = [level_to_dict(level) for level in passes.levels("web")]
    assert sorted(messages) == [
        f"Node {reserved[0]} gone from its cloud; not in the cloud, nothing to destroy",
        f"Node {reserved[1]} the cloud reports it in error: destroyed",
    ]
    assert [level["reserved"] for level in levels] == [0, 0, 2, 2, 0]


def test_a_faulty_vm_of_a_pool_is_destroyed_by_the_next_pass(warm):
    with warm.app_context():
        row = db.session.scalars(sqlalchemy.select(Assignment).where(Assignment.id_vm == "3")).one()
        row.status = FAULTY
        db.session.commit()

    run_pass(warm)

    assert "3" not in dummy_node_ids(warm)
    assert ("destroy", "3", "ok") in manager_history(warm)


def test_a_held_lock_makes_another_manager_skip_the_pass(make_app):
    app = make_app(POOLS=pool())
    with app.app_context(), one_at_a_time("web") as held:
        assert held
        [report] = run_pass(app)
    assert report.skipped and report.created == 0
    assert rows(app) == []
    assert run_pass(app)[0].created == 2


def test_managers_on_two_schemas_of_one_database_do_not_block_each_other(
    make_app, postgresql_engine
):
    """PostgreSQL's advisory locks are per database: two dispatchers in two schemas of one
    database each run their own pool web."""
    with (
        postgresql_schema(postgresql_engine) as first,
        postgresql_schema(postgresql_engine) as second,
    ):
        one = make_app(POOLS=pool(), SQLALCHEMY_DATABASE_URI=first)
        other = make_app(POOLS=pool(), SQLALCHEMY_DATABASE_URI=second)
        with one.app_context(), one_at_a_time("web") as held:
            assert held
            assert run_pass(one)[0].skipped
            assert run_pass(other)[0].created == 2
        for app in (one, other):
            with app.app_context():
                db.engine.dispose()


def test_a_failing_cloud_spills_over_and_is_left_alone_for_its_back_off(make_app, refusing_port):
    """The first cloud refuses connections: its error is on record, the pool fills on the
    second, and the next pass tries no creation on the first while it backs off."""
    farm = {**DUMMY_FARM, "broken": ec2_cloud(refusing_port)}
    first = {"cloud": "broken", "image": "ami-1", "size": "t2.micro"}
    app = make_app(
        CLOUD_FARM=farm, POOLS=pool(clouds=[first, WEB["clouds"][0]]), POOLS_BACKOFF_SECONDS=300
    )
    spills = metric("dispatcher_pool_spillovers_total", pool="web", cloud="broken")

    run_pass(app)
    run_pass(app)

    assert rows(app) == [("default", "3", FREE), ("default", "4", FREE)]
    status = token_client(app).get("/api/v1/pools/web").json["pool"]
    broken, default = status["clouds"]
    assert broken["cloud"] == "broken"
    assert broken["last_error"]["message"] == (
        "listing its nodes failed: broken: Connection refused"
    )
    assert datetime.datetime.fromisoformat(broken["last_error"]["time"]).tzinfo is not None
    assert default == DEFAULT_CLOUD_WITH_TWO_FREE
    assert metric("dispatcher_pool_spillovers_total", pool="web", cloud="broken") == spills + 1
    # No create call ever reached the broken cloud: it was backing off from the listing.
    assert (
        metric("dispatcher_cloud_call_duration_seconds_count", cloud="broken", method="create_node")
        == 0
    )


# -- seeing the pools --------------------------------------------------------------------


def test_pools_answer_their_state_by_cloud(warm):
    client = token_client(warm, "reader", roles=())
    client.put(ASSIGN, json={"vm_type": "web", "user": "u"})

    listed = client.get("/api/v1/pools")
    one = client.get("/api/v1/pools/web")

    assert listed.status_code == 200 and one.status_code == 200
    shown = dict(one.json["pool"])
    assert shown.pop("leases") == []  # the one assign asked for no lease
    assert listed.json["pools"] == [shown]
    assert datetime.datetime.fromisoformat(shown.pop("last_pass")).tzinfo is not None
    assert shown == {
        "name": "web",
        "min_ready": 2,
        "max_total": 3,
        "configured": {"min_ready": 2, "max_total": 3},
        "paused": False,
        "draining": False,
        "require_tags": [],
        "override": None,
        "target": {
            "free": 2,
            "because": "floor: min_ready 2",
            "floor": 2,
            "demand": None,
            "forecast": None,
            "requested": 0,
        },
        "booting": 0,
        "free": 2,
        "reserved": 0,
        "assigned": 0,
        "faulty": 0,
        "unready": 0,
        "current": 2,
        "outdated": 0,
        "clouds": [DEFAULT_CLOUD_WITH_TWO_FREE],
    }
    assert_error(client.get("/api/v1/pools/nowhere"), 404, "Unknown pool: nowhere")
    assert warm.test_client().get("/api/v1/pools").status_code == 401


def test_each_pass_leaves_the_pools_levels_for_a_chart_the_newest_kept(make_app):
    app = make_app(POOLS=pool(), POOLS_LEVELS_KEPT=2)
    client = token_client(app)
    run_pass(app)  # 2 booting
    run_pass(app)  # promoted: 2 free
    client.put(ASSIGN, json={"vm_type": "web", "user": "u"})
    run_pass(app)  # 1 free, 1 assigned, 1 new booting

    levels = client.get("/api/v1/pools/web/levels").json["levels"]

    counts = [(lv["booting"], lv["free"], lv["assigned"], lv["faulty"]) for lv in levels]
    assert counts == [(0, 2, 0, 0), (1, 1, 1, 0)]  # the first pass's level is gone
    assert levels[0]["time"] <= levels[1]["time"]
    newer = client.get("/api/v1/pools/web/levels", query_string={"after": levels[0]["id"]})
    assert newer.json["levels"] == levels[1:]
    assert_error(client.get("/api/v1/pools/nowhere/levels"), 404, "Unknown pool: nowhere")
    refused = client.get("/api/v1/pools/web/levels", query_string={"after": "x"})
    assert_error(refused, 400, "after: a whole number from 1 to 2147483647")
    with pytest.raises(ConfigurationError, match="^POOLS_LEVELS_KEPT must be a whole number"):
        create_app({"TESTING": True, "CLOUD_FARM": DUMMY_FARM, "POOLS_LEVELS_KEPT": 0})


def test_no_pools_configured_lists_none(client):
    assert client.get("/api/v1/pools").json == {"status": "ok", "pools": []}


def test_metrics_show_each_pool_by_state(warm):
    client = token_client(warm)
    client.put(ASSIGN, json={"vm_type": "web", "user": "u"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'dispatcher_pool_vms{pool="web",state="free"} 1.0' in text
    assert 'dispatcher_pool_vms{pool="web",state="assigned"} 1.0' in text
    assert 'dispatcher_pool_vms{pool="web",state="booting"} 0.0' in text
    assert metric("dispatcher_pool_assign_duration_seconds_count", pool="web") >= 1


def test_pools_status_reconcile_and_their_errors_on_the_command_line(make_app, refusing_port):
    farm = {**DUMMY_FARM, "broken": ec2_cloud(refusing_port)}
    starved = {
        "clouds": [{"cloud": "broken", "image": "ami-1", "size": "t2.micro"}],
        "min_ready": 1,
        "max_total": 1,
    }
    app = make_app(CLOUD_FARM=farm, POOLS={**pool(), "starved": starved})
    runner = app.test_cli_runner()

    first = runner.invoke(args=["worker", "pass", "--pool", "web"])
    waited = runner.invoke(args=["worker", "pass", "--wait", "1.5"])
    status = runner.invoke(args=["pools", "status"])
    unknown = runner.invoke(args=["worker", "pass", "--pool", "nowhere"])

    assert first.exit_code == 0, first.output
    assert first.output == (
        "pool web: 2 created, 0 promoted, 0 destroyed, 0 adopted; 2 free, 0 booting, "
        "0 assigned\n".replace("2 free, 0 booting", "0 free, 2 booting")
    )
    assert waited.exit_code == 1
    last = waited.output.strip().splitlines()[-1]
    assert last.startswith("Error: after 1.5 s: pool starved has 0 free of 1: broken: ")
    assert "web" not in last  # web was full
    lines = status.output.splitlines()
    assert lines[0].split()[:9] == [
        "POOL",
        "/",
        "CLOUD",
        "MIN",
        "MAX",
        "TARGET",
        "BOOTING",
        "FREE",
        "ASSIGNED",
    ]
    assert lines[1].split()[:8] == ["web", "2", "3", "2", "0", "2", "0", "0"]
    assert lines[1].endswith("  (floor: min_ready 2)")
    assert lines[2].split()[:6] == ["default", "0", "2", "0", "0", "-"]
    assert "Connection refused" in lines[4]
    assert unknown.exit_code == 1 and "Unknown pool: nowhere" in unknown.output


def test_pools_commands_without_pools_say_so(app):
    """Without POOLS, status says so, and a pass of the manager tends the leases only."""
    status = app.test_cli_runner().invoke(args=["pools", "status"])
    assert status.exit_code == 1
    assert status.output == "Error: no warm pools: POOLS is empty\n"
    result = app.test_cli_runner().invoke(args=["pools", "reconcile"])  # the older name
    assert result.exit_code == 0
    assert result.output == "leases: nothing to do\n"


def test_worker_pass_runs_the_jobs_named(app):
    """`worker pass --job NAME` runs that job alone: the reconcile report, kept for
    /metrics; the keys; a job that does not exist is a usage error."""
    runner = app.test_cli_runner()
    report = runner.invoke(args=["worker", "pass", "--job", "reconcile"])
    assert report.exit_code == 0, report.output
    assert report.output == "reconcile: 4 orphans, 0 ghosts, 0 mismatches\n"
    with app.app_context():
        kept = db.session.scalars(
            sqlalchemy.select(ReconcileSurvey).order_by(ReconcileSurvey.cloud)
        )
        assert [(row.cloud, row.orphans) for row in kept] == [("default", 2), ("fake_driver", 2)]
    keys = runner.invoke(args=["worker", "pass", "--job", "keys", "--job", "webhooks"])
    assert (keys.exit_code, keys.output) == (0, "")
    unknown = runner.invoke(args=["worker", "pass", "--job", "everything"])
    assert unknown.exit_code == 2
    assert (
        "'everything' is not one of 'pools', 'requests', 'leases', 'keys', 'webhooks', 'reconcile'"
        in (unknown.output)
    )


def test_a_cloud_that_refuses_a_creation_gets_no_more_of_that_pass(make_app):
    """An EC2 cloud at its instance limit refuses the first RunInstances: the two VMs not
    yet asked for go to the next cloud, and the full cloud gets no more requests."""
    image = (
        200,
        f'<DescribeImagesResponse xmlns="{EC2_NAMESPACE}"><requestId>r</requestId><imagesSet>'
        "<item><imageId>ami-1</imageId><imageLocation>x</imageLocation>"
        "<imageState>available</imageState><name>n</name></item>"
        "</imagesSet></DescribeImagesResponse>",
    )
    limit = (
        400,
        "<Response><Errors><Error><Code>InstanceLimitExceeded</Code>"
        "<Message>You have requested more instances than your current instance limit</Message>"
        "</Error></Errors><RequestID>r-4</RequestID></Response>",
    )
    with ScriptedCloud([NO_INSTANCES, image, limit]) as full:
        farm = {**DUMMY_FARM, "full": ec2_cloud(full.port)}
        first = {"cloud": "full", "image": "ami-1", "size": "t2.micro"}
        app = make_app(
            CLOUD_FARM=farm,
            POOLS=pool(clouds=[first, WEB["clouds"][0]], min_ready=3, max_total=3),
            POOLS_CREATE_CONCURRENCY=1,
        )

        [report] = run_pass(app)

        actions = [parse_qs(urlsplit(path).query)["Action"][0] for path in full.requests]
        assert actions == ["DescribeInstances", "DescribeImages", "RunInstances"]
    assert report.created == 3
    assert [cloud for cloud, *_ in rows(app)] == ["default"] * 3
    assert report.problems == [
        "full: creating a VM failed: full: InstanceLimitExceeded: You have requested more "
        "instances than your current instance limit"
    ]


def test_a_take_skips_the_vm_another_transaction_is_taking(make_app, postgresql_url):
    """On PostgreSQL a request that finds the first free VM being taken by another, not yet
    committed, takes the next one at once, rather than wait for the other to end (and then
    find nothing)."""
    app = make_app(POOLS=pool(), SQLALCHEMY_DATABASE_URI=postgresql_url)
    run_pass(app)
    run_pass(app)
    other = make_app(POOLS=pool(), SQLALCHEMY_DATABASE_URI=postgresql_url)
    with app.app_context():
        first = ledger.take_free("web", ["default"], "alice", "web")  # held, not committed
        with other.app_context():
            # Waiting for alice's transaction would fail here rather than hang the test.
            db.session.execute(sqlalchemy.text("SET LOCAL lock_timeout = '1s'"))
            second = ledger.take_free("web", ["default"], "bob", "web")
            db.session.commit()
            taken_by_bob = second.id_vm
        db.session.commit()
        assert {first.id_vm, taken_by_bob} == {"3", "4"}


def test_a_pass_on_a_database_in_memory_makes_the_folder_of_its_lock(monkeypatch, tmp_path):
    """On SQLite in memory the pool's lock is a file of the instance folder, made if it is
    not there yet (as `dispatcher run` on a fresh install would find it)."""
    folder = tmp_path / "instance-not-made-yet"
    monkeypatch.setenv("DISPATCHER_INSTANCE_PATH", str(folder))
    app = prepare_database(
        create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
                "CLOUD_FARM": DUMMY_FARM,
                "POOLS": pool(),
                "SECRET_KEY": "in-memory-test-key",
                "SECURITY_PASSWORD_SALT": "in-memory-test-salt",
            }
        )
    )
    assert not folder.exists()
    [report] = run_pass(app)
    assert (report.skipped, report.created) == (False, 2)
    assert (folder / "pool-web.lock").exists()
