"""The reconcile on libcloud's Dummy cloud: leased VMs that vanish or stop, a cloud that
cannot be listed, Cistern's books, the pool's lock, the command, the pool manager's
report in /metrics and bad requests. (moto's EC2: test_reconcile_ec2.py.)"""

import datetime
import json
import threading
import time

import pytest
import sqlalchemy
from cistern_server import SEED, CisternServer
from conftest import assert_error, ec2_cloud, metric, token_client
from libcloud.compute.types import NodeState

from dispatcher import clouds, create_app, worker
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
    WebhookDelivery,
)

RECONCILE = "/api/v1/reconcile"
APPLY = {"apply": True}
WEBHOOK = {"LEASE_WEBHOOK_URL": "http://127.0.0.1:9/hook", "LEASE_WEBHOOK_SECRET": "s"}
POOL = {"web": {"clouds": [{"cloud": "default", "image": "1", "size": "1"}], "min_ready": 0,
                "max_total": 3}}  # fmt: skip


def admin_of(app):
    return token_client(app, "boss", roles=("admin",))


def add_row(app, id_vm: str, status: int, leased: bool = False, **values) -> None:
    """A row of the ledger, as the dispatcher would have written it."""
    with app.app_context():
        row = Assignment(cloud="default", id_vm=id_vm, hostname=f"vm-{id_vm}", status=status)
        if status == ASSIGNED:
            row.user, row.recipe, row.assigned_by = "ada", "app", "tester"
        if leased:
            row.expires_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        for key, value in values.items():
            setattr(row, key, value)
        db.session.add(row)
        db.session.commit()


def books(app) -> dict[str, tuple]:
    with app.app_context():
        found = db.session.scalars(sqlalchemy.select(Assignment).order_by(Assignment.id))
        return {row.id_vm: (row.status, row.user, row.expires_at) for row in found}


def released_webhooks(app) -> list[str]:
    with app.app_context():
        calls = db.session.scalars(sqlalchemy.select(WebhookDelivery).order_by(WebhookDelivery.id))
        return [f"{call.event} {json.loads(call.body)['id_vm']}" for call in calls]


def stop_dummy_node(app, node_id: str) -> None:
    with app.app_context():
        for node in clouds.get("default").driver.list_nodes():
            if str(node.id) == node_id:
                node.state = NodeState.STOPPED


def test_leased_vms_that_vanish_or_stop_lose_their_lease_and_their_webhook_hears(make_app):
    app = make_app(**WEBHOOK)
    add_row(app, "1", FREE)  # the Dummy's node 1: all well
    add_row(app, "2", ASSIGNED, leased=True)  # stopped below: a mismatch
    add_row(app, "404", ASSIGNED, leased=True)  # the cloud has no 404: a ghost
    add_row(app, "405", ASSIGNED)  # a ghost without a lease: no webhook
    add_row(app, "406", BOOTING)  # a ghost too
    add_row(app, "407", FAULTY)  # not handed out: no ghost
    add_row(app, "408", RESERVED, request_id=5)  # set aside for a request: a ghost
    stop_dummy_node(app, "2")

    answer = admin_of(app).post(f"{RECONCILE}/default", json=APPLY)

    assert answer.status_code == 200, answer.json
    assert [(g["id_vm"], g["ledger_state"], g["fix"]) for g in answer.json["ghosts"]] == [
        ("404", "ASSIGNED", "marked DELETED"),
        ("405", "ASSIGNED", "marked DELETED"),
        ("406", "BOOTING", "marked DELETED"),
        ("408", "RESERVED", "marked DELETED"),
    ]
    [mismatch] = answer.json["mismatches"]
    assert (mismatch["id_vm"], mismatch["cloud_state"], mismatch["fix"]) == (
        "2",
        "stopped",
        "marked FAULTY",
    )
    assert answer.json["orphans"] == []
    assert books(app) == {
        "1": (FREE, None, None),
        "2": (FAULTY, None, None),
        "404": (DELETED, None, None),
        "405": (DELETED, None, None),
        "406": (DELETED, None, None),
        "407": (FAULTY, None, None),
        "408": (DELETED, None, None),
    }
    assert released_webhooks(app) == ["released 2", "released 404"]
    with app.app_context():
        entries = db.session.scalars(
            sqlalchemy.select(AuditEntry).where(AuditEntry.action == "reconcile")
        )
        assert sorted((e.id_vm, e.user, e.caller) for e in entries) == [
            ("2", "ada", "boss"),
            ("404", "ada", "boss"),
            ("405", "ada", "boss"),
            ("406", None, "boss"),
            ("408", None, "boss"),
        ]
        set_aside = sqlalchemy.select(Assignment).where(Assignment.request_id.is_not(None))
        assert db.session.scalars(set_aside).all() == []  # the request lost it


def test_a_cloud_that_cannot_be_listed_is_an_entry_and_gives_no_ghosts(make_app, refusing_port):
    farm = {"default": {"ENGINE": "dummy"}, "refusing": ec2_cloud(refusing_port)}
    app = make_app(CLOUD_FARM=farm)
    with app.app_context():
        db.session.add(Assignment(cloud="refusing", id_vm="i-1", hostname="a", status=FREE))
        db.session.commit()
    client = token_client(app)

    every = client.get(RECONCILE)

    assert every.status_code == 200, every.json
    assert (every.json["ghosts"], every.json["mismatches"]) == ([], [])
    assert [o["cloud"] for o in every.json["orphans"]] == ["default", "default"]
    default, refusing = every.json["clouds"]
    assert (default["name"], default["status"], default["count"]) == ("default", "ok", 2)
    assert (refusing["name"], refusing["status"]) == ("refusing", "error")
    assert refusing["message"].startswith("refusing: ")
    alone = client.get(f"{RECONCILE}/refusing")
    assert alone.status_code >= 500 and alone.json["message"] == refusing["message"]

    result = app.test_cli_runner().invoke(args=["reconcile"])
    assert result.exit_code == 1
    assert "2 orphans, 0 ghosts, 0 mismatches (dry run)" in result.output
    assert f"Error: not every cloud was listed: {refusing['message']}" in result.output


def test_cistern_books_are_reported_never_fixed(make_app):
    rows = [*SEED, {"id_vm": "7", "hostname": "gone-7", "cloud": "fake_driver", "status": FREE}]
    with CisternServer(rows=rows) as cistern:
        app = make_app(ASSIGNMENT_BACKEND="cistern", CISTERN_URL=cistern.url)
        admin = admin_of(app)

        report = admin.get(f"{RECONCILE}/fake_driver")
        refused = admin.post(f"{RECONCILE}/fake_driver", json=APPLY)

    assert report.status_code == 200, report.json
    assert report.json["ghosts"] == [
        {
            "cloud": "fake_driver",
            "id_vm": "7",
            "hostname": "gone-7",
            "ledger_state": "FREE",
            "cloud_state": None,
            "pool": None,
            "fix": "none: the books are Cistern's, which the dispatcher only reports on",
        }
    ]
    assert (report.json["orphans"], report.json["mismatches"]) == ([], [])
    assert_error(
        refused,
        400,
        "apply: the fixes change the local ledger; beside Cistern (ASSIGNMENT_BACKEND=cistern) "
        "the reconcile only reports",
    )
    assert cistern.count("POST") == cistern.count("PUT") == 0


def test_a_tagged_orphan_waits_while_the_pool_manager_holds_its_pool(make_app):
    app = make_app(POOLS=POOL)
    with app.app_context():
        # The Dummy keeps no metadata: a pool's VM is known by its name, <pool>-<creation id>
        # (which the Dummy does not take either).
        node = clouds.get("default").driver.create_node("web", None, None)
        node.name = "web-0123456789ab"
    admin = admin_of(app)

    with app.app_context(), one_at_a_time("web") as held:
        assert held
        waiting = admin.post(f"{RECONCILE}/default", json=APPLY).json["orphans"]
    adopted = admin.post(f"{RECONCILE}/default", json=APPLY).json["orphans"]

    assert [(o["id_vm"], o["pool"], o["fix"]) for o in waiting][-1] == (
        "3",
        "web",
        "none: the pool manager is on pool web, whose pass adopts it",
    )
    assert [(o["id_vm"], o["fix"]) for o in adopted][-1] == ("3", "adopted into pool web, booting")
    assert books(app) == {"3": (BOOTING, None, None)}


def test_the_command_destroys_foreign_orphans_when_asked(make_app):
    app = make_app(RECONCILE_GRACE_SECONDS=0)
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["reconcile", "--cloud", "default", "--destroy-orphans"])
    applied = runner.invoke(
        args=["reconcile", "--cloud", "default", "--apply", "--destroy-orphans"]
    )

    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "orphan   default 1 (dummy-1) books -, cloud running, pool -: destroy",
        "orphan   default 2 (dummy-2) books -, cloud running, pool -: destroy",
        "2 orphans, 0 ghosts, 0 mismatches (dry run)",
    ]
    assert applied.exit_code == 0, applied.output
    assert applied.output.splitlines()[-1] == "2 orphans, 0 ghosts, 0 mismatches (applied)"
    assert "pool -: destroyed" in applied.output
    with app.app_context():
        assert clouds.get("default").driver.list_nodes() == []
        callers = db.session.scalars(sqlalchemy.select(AuditEntry.caller)).all()
        assert callers == ["command line", "command line"]


def test_the_pool_manager_reports_each_interval_for_metrics(make_app):
    app = make_app(RECONCILE_INTERVAL=3600)
    add_row(app, "404", FREE)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run_forever, args=(app, [], 0.05, stop))
    calls_before = metric("dispatcher_cloud_call_duration_seconds_count", cloud="fake_driver",
                          method="list_nodes")  # fmt: skip
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with app.app_context():
                if db.session.get(ReconcileSurvey, "fake_driver") is not None:
                    break
            time.sleep(0.05)
        time.sleep(0.3)  # several more passes, none of them due for a report
    finally:
        stop.set()
        runner.join()

    listed = metric("dispatcher_cloud_call_duration_seconds_count", cloud="fake_driver",
                    method="list_nodes") - calls_before  # fmt: skip
    assert listed == 1
    scraped = app.test_client().get("/metrics").text
    assert 'dispatcher_reconcile_findings{cloud="default",kind="orphans"} 2.0' in scraped
    assert 'dispatcher_reconcile_findings{cloud="default",kind="ghosts"} 1.0' in scraped
    assert 'dispatcher_reconcile_findings{cloud="fake_driver",kind="mismatches"} 0.0' in scraped
    assert books(app)["404"][0] == FREE  # reported, not fixed


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("post", RECONCILE, {"apply": "yes"}, 400, "apply: true or false"),
        ("post", RECONCILE, {"destroy_orphans": 1}, 400, "destroy_orphans: true or false"),
        ("post", RECONCILE, [], 400, "Malformed JSON stream: the body must be a JSON object"),
        ("get", f"{RECONCILE}/all", None, 400, "cloud: all names every cloud"),
        ("get", f"{RECONCILE}/nowhere", None, 404, "Unknown cloud"),
    ],
)
def test_bad_requests(app, method, path, body, status, message):
    answer = getattr(admin_of(app), method)(path, json=body)
    assert_error(answer, status, message, prefix=True)


def test_a_post_without_a_body_is_a_dry_run(app):
    add_row(app, "404", FREE)
    answer = admin_of(app).post(f"{RECONCILE}/default")
    assert (answer.status_code, answer.json["applied"]) == (200, False)
    assert answer.json["ghosts"][0]["fix"] == "mark DELETED"
    assert books(app)["404"][0] == FREE


@pytest.mark.parametrize("setting", ["RECONCILE_GRACE_SECONDS", "RECONCILE_INTERVAL"])
@pytest.mark.parametrize("value", [-1, True, "60"])
def test_settings_out_of_range_stop_the_start(setting, value):
    with pytest.raises(ConfigurationError, match=f"^{setting} must be a number of seconds from 0$"):
        create_app({"TESTING": True, "CLOUD_FARM": DUMMY_FARM, setting: value})
