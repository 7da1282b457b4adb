"""Leases on libcloud's Dummy cloud: the lease an assign gets and its caps, extend, who may
extend or release a leased VM, and the pool manager's release at the end. (moto's EC2:
test_leases_ec2.py.)"""

import datetime
import json
import threading
import time

import pytest
import sqlalchemy
from conftest import SQLITE_ONLY, assert_error, token_client
from helpers import WEBHOOK_SECRET, docs_recipe

from dispatcher import clouds, create_app, pools, webhooks, worker
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.locks import one_at_a_time
from dispatcher.models import (
    ASSIGNED,
    DELETED,
    FAULTY,
    FREE,
    Assignment,
    AuditEntry,
    IdempotencyKey,
    WebhookDelivery,
)
from dispatcher.operations import leases as expiry
from dispatcher.worker import key_purge, lease_expiry, pool_pass

ASSIGN = "/api/v1/vm/action/assign/fake_driver"
RELEASE = "/api/v1/vm/action/release/fake_driver"
EXTEND = "/api/v1/vm/action/extend/fake_driver"
STATUS = "/api/v1/vm/status/fake_driver"
POOL = {
    "web": {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": 1,
        "max_total": 2,
    }
}


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def when(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text)
    assert moment.utcoffset() == datetime.timedelta(0)  # UTC, and says so
    return moment


def assign(client, lease=None, node="1", url=ASSIGN):
    body = {"node": node, "user": "zeppolo", "vm_type": "app"}
    if lease is not None:
        body["lease"] = lease
    return client.put(url, json=body)


def row(app, id_vm="1", cloud="fake_driver") -> Assignment:
    with app.app_context():
        found = db.session.scalars(
            sqlalchemy.select(Assignment).where(
                Assignment.cloud == cloud, Assignment.id_vm == id_vm
            )
        ).one()
        db.session.expunge(found)
        return found


def end_lease(app, id_vm="1", cloud="fake_driver", ago=1) -> None:
    """Let the lease of the VM end ``ago`` seconds before now, as time would."""
    with app.app_context():
        db.session.execute(
            sqlalchemy.update(Assignment)
            .where(Assignment.cloud == cloud, Assignment.id_vm == id_vm)
            .values(expires_at=utcnow() - datetime.timedelta(seconds=ago))
        )
        db.session.commit()


def upkeep(app) -> expiry.LeaseReport:
    """The worker's jobs of a pass besides the pools: the leases, then the keys."""
    with app.app_context():
        report = lease_expiry.run()
        key_purge.run()
        return report


def history(app, caller=None) -> list[tuple]:
    with app.app_context():
        query = sqlalchemy.select(AuditEntry).order_by(AuditEntry.id)
        if caller is not None:
            query = query.where(AuditEntry.caller == caller)
        return [
            (entry.action, entry.id_vm, entry.caller, entry.outcome, entry.message)
            for entry in db.session.scalars(query)
        ]


def dummy_ids(app, cloud="fake_driver") -> list[str]:
    with app.app_context():
        return sorted(str(node.id) for node in clouds.get(cloud).driver.list_nodes())


# -- the lease an assign gets --------------------------------------------------------------


def test_an_assign_with_a_lease_answers_and_lists_its_end(app):
    client = token_client(app)
    before = utcnow()
    response = assign(client, lease=600)
    after = utcnow()

    assert response.status_code == 200, response.json
    ends = when(response.json["expires_at"])
    assert (
        before + datetime.timedelta(seconds=600) <= ends <= after + datetime.timedelta(seconds=600)
    )
    assert response.json["result"] == "Node 1 assigned"
    listed = {node["id_vm"]: node for node in client.get(STATUS).json["nodes"]}
    assert listed["1"]["expires_at"] == response.json["expires_at"]
    assert (row(app).assigned_by, row(app).status) == ("tester", ASSIGNED)


def test_without_a_lease_nothing_ends_and_the_answers_are_as_before(app):
    """No lease asked and none configured: the original's answer, no expires_at anywhere."""
    client = token_client(app)
    response = assign(client)
    assert response.json == {"status": "ok", "id_vm": "1", "id": 1, "result": "Node 1 assigned"}
    assert "expires_at" not in client.get(STATUS).json["nodes"][0]
    assert row(app).expires_at is None
    assert upkeep(app) == expiry.LeaseReport()
    assert row(app).status == ASSIGNED


def fill(app) -> None:
    """Two passes of the pool manager: the pools' VMs made, then free."""
    with app.app_context():
        pool_pass.run(pools.every())
        pool_pass.run(pools.every())


def test_default_lease_applies_and_a_pool_lease_wins_for_its_vms(make_app):
    app = make_app(DEFAULT_LEASE=120, POOLS={"web": {**POOL["web"], "lease": 30}})
    client = token_client(app)
    fill(app)
    start = utcnow()
    by_node = assign(client).json
    by_type = client.put("/api/v1/vm/action/assign", json={"vm_type": "web", "user": "zeppolo"})

    assert 120 <= (when(by_node["expires_at"]) - start).total_seconds() <= 125
    assert 30 <= (when(by_type.json["expires_at"]) - start).total_seconds() <= 35
    shown = client.get("/api/v1/pools/web").json["pool"]["leases"]
    assert shown == [
        {
            "cloud": "default",
            "id_vm": by_type.json["id_vm"],
            "hostname": by_type.json["hostname"],
            "user": "zeppolo",
            "expires_at": by_type.json["expires_at"],
        }
    ]
    assert row(app, by_type.json["id_vm"], "default").assigned_by == "tester"


@pytest.mark.parametrize(
    ("settings", "lease", "message"),
    [
        ({"MAX_LEASE": 3600}, 3601, "lease: 3601 s is longer than the cap of 3600 s (MAX_LEASE)"),
        (
            {"MAX_LEASE": 3600, "DEFAULT_LEASE": 3600},
            7200,
            "lease: 7200 s is longer than the cap of 3600 s (MAX_LEASE)",
        ),
    ],
)
def test_a_lease_beyond_the_cap_is_400_naming_it_and_changes_nothing(
    make_app, settings, lease, message
):
    app = make_app(**settings)
    client = token_client(app)
    assert_error(assign(client, lease=lease), 400, message)
    assert row(app).status == FREE  # adopted on sight, not assigned
    assert history(app)[-1][:4] == ("assign", "1", "tester", "400")


def test_a_pools_max_lease_caps_its_vms_below_max_lease(make_app):
    app = make_app(MAX_LEASE=3600, POOLS={"web": {**POOL["web"], "max_lease": 60}})
    client = token_client(app)
    fill(app)
    refused = client.put(
        "/api/v1/vm/action/assign", json={"vm_type": "web", "user": "u", "lease": 61}
    )
    assert_error(refused, 400, "lease: 61 s is longer than the cap of 60 s (max_lease of pool web)")
    assert client.get("/api/v1/pools/web").json["pool"]["free"] == 1  # nothing taken
    taken = client.put(
        "/api/v1/vm/action/assign", json={"vm_type": "web", "user": "u", "lease": 60}
    )
    assert taken.status_code == 200


@pytest.mark.parametrize("lease", [0, -1, 315360001, 10**30, 1.5, "60", True, None])
@SQLITE_ONLY
def test_a_lease_that_is_no_whole_number_of_seconds_is_400(app, lease):
    client = token_client(app)
    body = {"node": "1", "user": "u", "vm_type": "app", "lease": lease}
    assert_error(
        client.put(ASSIGN, json=body),
        400,
        "lease: a whole number of seconds from 1 to 315360000",
    )
    extended = client.put(EXTEND, json={"node": "1", "lease": lease})
    assert_error(extended, 400, "lease: a whole number of seconds from 1 to 315360000")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"DEFAULT_LEASE": 0},
            "DEFAULT_LEASE must be a whole number of seconds from 1 to 315360000",
        ),
        ({"MAX_LEASE": "1h"}, "MAX_LEASE must be a whole number of seconds from 1 to 315360000"),
        (
            {"DEFAULT_LEASE": 7200, "MAX_LEASE": 3600},
            "DEFAULT_LEASE (7200) is longer than MAX_LEASE (3600)",
        ),
        (
            {"POOLS": {"web": {**POOL["web"], "lease": 90, "max_lease": 60}}},
            "POOLS['web']: lease (90) is longer than max_lease of pool web (60)",
        ),
        (
            {"POOLS": {"web": {**POOL["web"], "max_lease": 60}}, "DEFAULT_LEASE": 90},
            "DEFAULT_LEASE (90) is longer than max_lease of pool web (60)",
        ),
        (
            {"POOLS": {"web": {**POOL["web"], "lease": 0}}},
            "POOLS['web']: lease must be a whole number from 1",
        ),
        (
            {"POOLS": {"web": {**POOL["web"], "webhook_url": "https://hooks.example.org/w"}}},
            "POOLS['web']: webhook_url is set but LEASE_WEBHOOK_SECRET is not: set it (or the "
            "environment variable DISPATCHER_LEASE_WEBHOOK_SECRET) so that the calls are signed",
        ),
        (
            {
                "POOLS": {"web": {**POOL["web"], "webhook_url": "ftp://hooks.example.org/w"}},
                "LEASE_WEBHOOK_SECRET": "s",
            },
            "POOLS['web']: webhook_url must be an http or https URL with a host",
        ),
        (
            {"DEFAULT_LEASE": 60, "ASSIGNMENT_BACKEND": "cistern"},
            "DEFAULT_LEASE needs the local ledger (ASSIGNMENT_BACKEND='local'), which keeps the "
            "ends of the leases",
        ),
        ({"LEASE_WARNING_SECONDS": -1}, "LEASE_WARNING_SECONDS must be a number of seconds from 0"),
        (
            {"LEASE_WARNING_SECONDS": "300"},
            "LEASE_WARNING_SECONDS must be a number of seconds from 0",
        ),
    ],
)
def test_lease_settings_that_cannot_work_are_one_line_errors(settings, message):
    with pytest.raises(ConfigurationError) as caught:
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", **settings})
    assert str(caught.value) == message


# -- extend --------------------------------------------------------------------------------


def test_extend_moves_the_end_within_the_cap_and_is_in_the_history(make_app):
    app = make_app(MAX_LEASE=3600)
    client = token_client(app)
    first = when(assign(client, lease=60).json["expires_at"])
    start = utcnow()

    extended = client.put(EXTEND, json={"hostname": "dummy-1", "lease": 3600})

    assert extended.status_code == 200, extended.json
    ends = extended.json["expires_at"]
    assert extended.json == {
        "status": "ok",
        "id_vm": "1",
        "id": 1,
        "result": f"Node 1 leased until {ends}",
        "expires_at": ends,
    }
    assert when(ends) > first and (when(ends) - start).total_seconds() >= 3600
    assert client.get(STATUS).json["nodes"][0]["expires_at"] == ends
    assert history(app)[-1] == ("extend", "1", "tester", "ok", f"Node 1 leased until {ends}")
    beyond = client.put(EXTEND, json={"node": "1", "lease": 3601})
    assert_error(beyond, 400, "lease: 3601 s is longer than the cap of 3600 s (MAX_LEASE)")
    assert client.get(STATUS).json["nodes"][0]["expires_at"] == ends  # unchanged


def test_extend_of_a_vm_not_assigned_is_409_and_of_an_unknown_one_404(app):
    client = token_client(app)
    assign(client, lease=60)
    client.put(RELEASE, json={"node": "1"})
    assert_error(
        client.put(EXTEND, json={"node": "1", "lease": 60}),
        404,
        "no valid node id nor hostname here: the ledger has no 1",
    )
    assign(client, node="2")
    client.put(RELEASE, json={"node": "2", "emulate": True})
    with app.app_context():
        db.session.execute(sqlalchemy.update(Assignment).values(status=FREE, user=None))
        db.session.commit()
    assert_error(client.put(EXTEND, json={"node": "2", "lease": 60}), 409, "node 2 is free")
    assert_error(
        client.put(EXTEND, json={"node": "77", "lease": 60}),
        404,
        "no valid node id nor hostname here: the ledger has no 77",
    )
    assert row(app, "2").status == FREE  # nothing adopted, nothing assigned


def test_extend_gives_an_unleased_assignment_a_lease(app):
    client = token_client(app)
    assign(client)
    extended = client.put(EXTEND, json={"node": "1", "lease": 90})
    assert extended.status_code == 200
    assert client.get(STATUS).json["nodes"][0]["expires_at"] == extended.json["expires_at"]


# -- who may extend or release -------------------------------------------------------------


def test_only_the_assigner_or_an_admin_extends_or_releases_a_leased_vm(app):
    owner = token_client(app, "owner")
    other = token_client(app, "other")
    admin = token_client(app, "boss", roles=("admin",))
    assign(owner, lease=600, node="1")
    assign(owner, lease=600, node="2")

    forbidden = (
        "Forbidden: only the caller who assigned node 1, or an admin, may {} (owner assigned it)"
    )
    assert_error(
        other.put(EXTEND, json={"node": "1", "lease": 60}),
        403,
        forbidden.format("extend its lease"),
    )
    assert_error(other.put(RELEASE, json={"node": "1"}), 403, forbidden.format("release it"))
    assert row(app).status == ASSIGNED
    assert [entry[2:4] for entry in history(app)[-2:]] == [("other", "403"), ("other", "403")]

    assert admin.put(EXTEND, json={"node": "1", "lease": 60}).status_code == 200
    assert admin.put(RELEASE, json={"node": "1"}).status_code == 200
    assert owner.put(EXTEND, json={"node": "2", "lease": 60}).status_code == 200
    assert owner.put(RELEASE, json={"node": "2"}).status_code == 200
    assert dummy_ids(app) == []


def test_an_unleased_vm_is_released_by_any_agent_as_before(app):
    assign(token_client(app, "owner"))
    released = token_client(app, "other").put(RELEASE, json={"node": "1"})
    assert released.status_code == 200
    assert released.json["result"] == "Node 1 released and deleted"


def test_extend_of_an_unleased_vm_needs_its_assigner_too(app):
    assign(token_client(app, "owner"))
    refused = token_client(app, "other").put(EXTEND, json={"node": "1", "lease": 60})
    assert refused.status_code == 403


# -- the end of a lease --------------------------------------------------------------------


def test_a_pass_after_the_end_releases_and_destroys_the_vm(app):
    client = token_client(app)
    assign(client, lease=600)
    assert upkeep(app).released == 0
    end_lease(app)

    report = upkeep(app)

    assert (report.released, report.problems) == (1, [])
    assert row(app).status == DELETED
    assert dummy_ids(app) == ["2"]
    assert history(app, expiry.CALLER) == [
        ("release", "1", "lease-expiry", "ok", "Node 1 released and deleted")
    ]
    assert upkeep(app).released == 0  # once


def test_a_reused_pool_vm_goes_back_free_at_the_end_of_its_lease(make_app):
    app = make_app(POOLS={"web": {**POOL["web"], "release": "reuse"}})
    client = token_client(app)
    fill(app)
    taken = client.put(
        "/api/v1/vm/action/assign", json={"vm_type": "web", "user": "u", "lease": 60}
    )
    node = taken.json["id_vm"]
    end_lease(app, node, "default")

    assert upkeep(app).released == 1

    ended = row(app, node, "default")
    assert (ended.status, ended.user, ended.expires_at, ended.assigned_by) == (
        FREE,
        None,
        None,
        None,
    )
    assert node in dummy_ids(app, "default")
    assert history(app, expiry.CALLER)[-1][:4] == ("release", node, "lease-expiry", "ok")


def test_a_destroy_the_cloud_refuses_leaves_the_vm_faulty_and_the_next_pass_finishes_it(
    app, monkeypatch
):
    """Never free while it runs: the release keeps it faulty until the destroy succeeds."""
    client = token_client(app)
    assign(client, lease=60)
    end_lease(app)
    with app.app_context():
        driver = clouds.get("fake_driver").driver
    destroy = driver.destroy_node
    monkeypatch.setattr(driver, "destroy_node", lambda node: False)

    first = upkeep(app)

    assert first.released == 0 and "the cloud did not destroy node 1" in first.problems[0]
    assert row(app).status == FAULTY
    assert "1" not in [node["id_vm"] for node in client.get(STATUS).json["nodes"]]
    assert_error(assign(client), 409, "node 1 is faulty")
    second = upkeep(app)
    assert second.destroyed == 0 and row(app).status == FAULTY
    monkeypatch.setattr(driver, "destroy_node", destroy)

    third = upkeep(app)

    assert (third.destroyed, third.problems) == (1, [])
    assert row(app).status == DELETED and dummy_ids(app) == ["2"]
    assert [entry[:4] for entry in history(app, expiry.CALLER)] == [
        ("release", "1", "lease-expiry", "502"),
        ("destroy", "1", "lease-expiry", "502"),
        ("destroy", "1", "lease-expiry", "ok"),
    ]
    assert upkeep(app) == expiry.LeaseReport()


def test_a_lease_about_to_end_is_warned_of_once_and_again_after_an_extend(app):
    client = token_client(app)
    assign(client, lease=60)  # within LEASE_WARNING_SECONDS (300) of its end
    assert upkeep(app).warned == 1
    assert upkeep(app).warned == 0
    assert row(app).lease_warned_at is not None
    client.put(EXTEND, json={"node": "1", "lease": 3600})
    assert row(app).lease_warned_at is None
    assert upkeep(app).warned == 0  # 3600 s away: not yet
    client.put(EXTEND, json={"node": "1", "lease": 120})
    assert upkeep(app).warned == 1


def test_another_manager_on_the_leases_makes_this_one_skip(app):
    assign(token_client(app), lease=60)
    end_lease(app)
    with app.app_context(), one_at_a_time(lease_expiry.LOCK) as held:
        assert held
        assert upkeep(app) == expiry.LeaseReport(skipped=True)
    assert row(app).status == ASSIGNED
    assert upkeep(app).released == 1


def test_a_pass_on_the_command_line_reports_the_leases(app):
    assign(token_client(app), lease=60)
    end_lease(app)
    result = app.test_cli_runner().invoke(args=["pools", "reconcile"])
    assert result.exit_code == 0, result.output
    assert result.output == "leases: 0 warned, 1 released, 0 destroyed\n"


# -- the lease webhooks, sent by the manager ----------------------------------------------


def wait_for(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def deliveries(app) -> list[tuple]:
    with app.app_context():
        return [
            (row.event, row.attempts, row.delivered_at is not None, row.given_up_at is not None)
            for row in db.session.scalars(
                sqlalchemy.select(WebhookDelivery).order_by(WebhookDelivery.id)
            )
        ]


def test_the_manager_calls_the_webhooks_and_a_failing_one_stalls_nothing(make_app, good, failing):
    """The lease of a VM of no pool goes to LEASE_WEBHOOK_URL, which answers: it gets
    expiring then released, signed as the docs verify. The pool's VMs go to its
    webhook_url, which answers 500: each call is made LEASE_WEBHOOK_ATTEMPTS times, then
    given up, while the other receiver's calls and the releases go on."""
    app = make_app(
        LEASE_WEBHOOK_URL=good.url(),
        LEASE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        LEASE_WEBHOOK_ATTEMPTS=3,
        LEASE_WEBHOOK_BACKOFF_SECONDS=0.05,
        POOLS={"web": {**POOL["web"], "release": "reuse", "webhook_url": failing.url()}},
    )
    fill(app)
    owner = token_client(app)
    # Within LEASE_WARNING_SECONDS (300) of their ends: the first pass warns.
    by_node = assign(owner, lease=200).json
    by_type = owner.put(
        "/api/v1/vm/action/assign", json={"vm_type": "web", "user": "alice", "lease": 200}
    ).json
    with app.app_context():
        selected = pools.every()
    stop = threading.Event()
    runner = threading.Thread(target=worker.run_forever, args=(app, selected, 0.1, stop))
    runner.start()
    try:
        wait_for(lambda: len(good.calls) == 1, "the expiring call")
        end_lease(app)
        end_lease(app, by_type["id_vm"], "default")
        wait_for(lambda: len(good.calls) == 2, "the released call")
        wait_for(lambda: len(failing.calls) == 6, "three tries of both calls to the pool's hook")
        wait_for(lambda: [row[3] for row in deliveries(app)].count(True) == 2, "giving up")
    finally:
        stop.set()
        runner.join(timeout=30)

    verified = docs_recipe()
    sent = [json.loads(call["body"]) for call in good.calls]
    for call in good.calls:
        assert verified(call["body"], call["headers"]["X-Dispatcher-Signature"], WEBHOOK_SECRET)
        assert not verified(
            call["body"] + b" ", call["headers"]["X-Dispatcher-Signature"], WEBHOOK_SECRET
        )
    assert [body["event"] for body in sent] == ["expiring", "released"]
    assert sent[0] == {
        "event": "expiring",
        "cloud": "fake_driver",
        "id_vm": "1",
        "hostname": "dummy-1",
        "user": "zeppolo",
        "vm_type": "app",
        "expires_at": by_node["expires_at"],
    }
    assert sent[1]["user"] == "zeppolo" and sent[1]["expires_at"] != by_node["expires_at"]
    events = sorted(json.loads(call["body"])["event"] for call in failing.calls)
    assert events == ["expiring"] * 3 + ["released"] * 3
    assert sorted(deliveries(app)) == [
        ("expiring", 1, True, False),
        ("expiring", 3, False, True),
        ("released", 1, True, False),
        ("released", 3, False, True),
    ]
    assert row(app).status == DELETED  # released and destroyed on time
    assert row(app, by_type["id_vm"], "default").status == FREE  # back in its pool
    outcomes = [entry[3] for entry in history(app, webhooks.CALLER)]
    assert outcomes.count("ok") == 2 and outcomes.count("500") == 6


def test_a_release_request_of_a_leased_vm_queues_its_released_call_and_a_refused_one_none(
    make_app,
):
    app = make_app(LEASE_WEBHOOK_URL="http://127.0.0.1:9/hook", LEASE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    owner, other = token_client(app, "owner"), token_client(app, "other")
    assign(owner, lease=3600)
    assign(owner, node="2")  # no lease: no webhook

    assert other.put(RELEASE, json={"node": "1"}).status_code == 403
    assert owner.put(RELEASE, json={"node": "1", "emulate": True}).status_code == 200
    assert deliveries(app) == []
    assert owner.put(RELEASE, json={"node": "1"}).status_code == 200
    assert owner.put(RELEASE, json={"node": "2"}).status_code == 200

    assert deliveries(app) == [("released", 0, False, False)]  # queued, for the manager


def test_a_pass_deletes_the_expired_idempotency_keys(app):
    client = token_client(app)
    old = client.put(
        ASSIGN, json={"node": "1", "user": "u", "vm_type": "a"}, headers={"Idempotency-Key": "old"}
    )
    new = client.put(
        ASSIGN, json={"node": "2", "user": "u", "vm_type": "a"}, headers={"Idempotency-Key": "new"}
    )
    assert old.status_code == new.status_code == 200
    with app.app_context():
        db.session.execute(
            sqlalchemy.update(IdempotencyKey)
            .where(IdempotencyKey.key == "old")
            .values(expires_at=utcnow() - datetime.timedelta(seconds=1))
        )
        db.session.commit()

    upkeep(app)

    with app.app_context():
        assert db.session.scalars(sqlalchemy.select(IdempotencyKey.key)).all() == ["new"]


def test_an_extend_sent_twice_with_one_idempotency_key_runs_once(app):
    client = token_client(app)
    assign(client, lease=60)
    body, headers = {"node": "1", "lease": 600}, {"Idempotency-Key": "extend-once"}

    first = client.put(EXTEND, json=body, headers=headers)
    again = client.put(EXTEND, json=body, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert [entry[0] for entry in history(app)].count("extend") == 1
