"""Requests for VMs that wait in line, on libcloud's Dummy cloud, SQLite and PostgreSQL:
served at once or in line by priority then age, all or nothing, cancelled and expired
with their VMs set aside freed, one request per Idempotency-Key, and every bad request a
4xx that names what is wrong."""

import datetime
import json
import re
import time

import pytest
import sqlalchemy
import time_machine
from conftest import SQLITE_ONLY, assert_error, metric, token_client

from dispatcher import create_app, operations, pools, webhooks
from dispatcher.bookkeeping import ledger
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.models import ASSIGNED, FREE, RESERVED, Assignment, AuditEntry
from dispatcher.worker import scheduler, webhook_delivery

REQUESTS = "/api/v1/requests"
ASSIGN = "/api/v1/vm/action/assign"
START = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


def pool(min_ready: int, max_total: int) -> dict:
    return {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": min_ready,
        "max_total": max_total,
        "release": "reuse",  # the Dummy driver gives a destroyed node's id to the next
        "boot_timeout": 86400,
    }


def work(app) -> None:
    """One pass of the worker: the pools, the requests in line, the leases, the keys."""
    with app.app_context():
        scheduler.run_pass(pools.every())


def vms(app) -> dict[str, list]:
    """The pools' live VMs by state name: (pool, user, request_id) of each."""
    names = {FREE: "free", ASSIGNED: "assigned", RESERVED: "reserved"}
    found: dict[str, list] = {name: [] for name in names.values()}
    with app.app_context():
        rows = db.session.execute(
            sqlalchemy.select(
                Assignment.status, Assignment.pool, Assignment.user, Assignment.request_id
            ).where(Assignment.pool.is_not(None))
        )
        for status, *rest in rows:
            if status in names:
                found[names[status]].append(tuple(rest))
    return found


def actions(app) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.execute(
            sqlalchemy.select(AuditEntry.action, AuditEntry.message).order_by(AuditEntry.id)
        )
        return [(action, message) for action, message in rows if action in REQUEST_ACTIONS]


REQUEST_ACTIONS = {"request", "serve", "cancel", "expire"}


@pytest.fixture
def filled(make_app):
    """web (2 kept free, at most 4) and db (1, at most 2), filled by two passes."""
    app = make_app(POOLS={"web": pool(2, 4), "db": pool(1, 2)})
    work(app)
    work(app)
    return app


def test_a_request_for_free_vms_is_ready_at_once_with_all_of_them(filled):
    client = token_client(filled)
    answer = client.post(REQUESTS, json={"vms": {"web": 2, "db": 1}, "user": "ada"})

    assert answer.status_code == 200, answer.json
    shown = answer.json["request"]
    assert shown["state"] == "ready"
    assert (shown["user"], shown["priority"], shown["asked"]) == ("ada", 2, {"web": 2, "db": 1})
    assert (shown["position"], shown["estimated_wait_s"]) == (None, None)
    assert sorted(vm["vm_type"] for vm in shown["vms"]) == ["db", "web", "web"]
    held = vms(filled)["assigned"]
    assert sorted(held) == [("db", "ada", shown["id"])] + [("web", "ada", shown["id"])] * 2
    assert [action for action, _ in actions(filled)] == ["request", "serve"]
    again = client.get(f"{REQUESTS}/{shown['id']}").json["request"]
    assert again == shown


def test_a_request_waits_in_line_and_is_served_whole_once_its_vms_are_made(make_app):
    """Nothing free: 202 with its place; the worker makes its VMs beyond min_ready (0)
    and hands them over together, never one before the others."""
    app = make_app(POOLS={"web": pool(0, 4), "db": pool(0, 2)})
    client = token_client(app)
    answer = client.post(REQUESTS, json={"vms": {"web": 2, "db": 1}, "user": "ada"})

    assert answer.status_code == 202, answer.json
    shown = answer.json["request"]
    assert answer.headers["Location"].endswith(f"/api/v1/requests/{shown['id']}")
    assert (shown["state"], shown["position"], shown["vms"]) == ("pending", 1, [])
    assert isinstance(shown["estimated_wait_s"], int)
    assert client.get("/api/v1/pools/web").json["pool"]["target"]["requested"] == 2

    work(app)  # makes 2 web and 1 db, booting
    assert vms(app)["assigned"] == []
    work(app)  # promotes them, sets them aside, hands them over at once
    after = client.get(f"{REQUESTS}/{shown['id']}").json["request"]
    assert after["state"] == "ready"
    assert len(vms(app)["assigned"]) == 3 and vms(app)["reserved"] == []


def test_the_line_is_served_by_priority_then_age(make_app):
    """Two VMs at most: of three requests of one VM, the two of priority 1 (in the order
    they came) get them, the older request of priority 3 waits."""
    app = make_app(POOLS={"web": pool(0, 2)})
    client = token_client(app)
    made = [
        client.post(REQUESTS, json={"vms": {"web": 1}, "user": user, "priority": priority})
        for user, priority in (("low", 3), ("first", 1), ("second", 1))
    ]
    ids = [answer.json["request"]["id"] for answer in made]
    assert [answer.status_code for answer in made] == [202] * 3
    positions = [client.get(f"{REQUESTS}/{i}").json["request"]["position"] for i in ids]
    assert positions == [3, 1, 2]

    work(app)
    work(app)
    states = [client.get(f"{REQUESTS}/{i}").json["request"]["state"] for i in ids]
    assert states == ["pending", "ready", "ready"]
    assert sorted(user for _, user, _ in vms(app)["assigned"]) == ["first", "second"]
    assert client.get(f"{REQUESTS}/{ids[0]}").json["request"]["position"] == 1


def test_a_pass_over_a_line_that_nothing_can_serve_costs_the_same_however_long(make_app):
    """Both VMs of web held: a pass over three waiting requests and one over thirty send
    the same statements, none of them a change (a long line is not a load on the
    database at every pass); a VM released then goes to the first in line."""
    app = make_app(POOLS={"web": pool(0, 2)})
    client = token_client(app)
    held = client.post(REQUESTS, json={"vms": {"web": 2}, "user": "first"}).json["request"]
    work(app)
    work(app)
    assert client.get(f"{REQUESTS}/{held['id']}").json["request"]["state"] == "ready"

    def a_pass() -> list[str]:
        sent = []
        with app.app_context():
            engine = db.engine
            record = lambda conn, cursor, statement, *args: sent.append(statement)  # noqa: E731
            sqlalchemy.event.listen(engine, "before_cursor_execute", record)
            try:
                report = operations.serve_requests()
            finally:
                sqlalchemy.event.remove(engine, "before_cursor_execute", record)
        assert (report.ready, report.waiting) == (0, waiting)
        return sent

    asked = [
        client.post(REQUESTS, json={"vms": {"web": 1}, "user": f"u{n}"}).json["request"]["id"]
        for n in range(30)
    ]
    waiting = 30
    thirty = a_pass()
    with app.app_context():
        for request_id in asked[3:]:
            operations.cancel_request(request_id, "tester", admin=True)
    waiting = 3
    three = a_pass()
    assert len(thirty) == len(three) and len(three) <= 6, three
    assert not [s for s in three if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]

    vm = client.get(f"{REQUESTS}/{held['id']}").json["request"]["vms"][0]
    release = f"/api/v1/vm/action/release/{vm['cloud']}"
    assert client.put(release, json={"node": vm["id_vm"]}).status_code == 200
    with app.app_context():
        operations.serve_requests()
    states = [client.get(f"{REQUESTS}/{i}").json["request"]["state"] for i in asked[:3]]
    assert states == ["ready", "pending", "pending"]


def test_a_cancel_frees_the_vms_set_aside_at_once_and_an_assign_never_takes_them(make_app):
    """web has VMs, db is paused with none: the web VMs are set aside for the request and
    an assign by type gets the 503 it always got; the cancel gives them back."""
    app = make_app(POOLS={"web": pool(2, 4), "db": pool(0, 2)})
    admin = token_client(app, "root", roles=("admin",))
    assert admin.patch("/api/v1/pools/db", json={"paused": True}).status_code == 200
    work(app)
    work(app)
    client = token_client(app)
    made = client.post(REQUESTS, json={"vms": {"web": 2, "db": 1}, "user": "ada"})
    request_id = made.json["request"]["id"]
    work(app)
    assert sorted(vms(app)["reserved"]) == [("web", None, request_id)] * 2
    refused = client.put(ASSIGN, json={"vm_type": "web", "user": "bob"})
    assert_error(refused, 503, "pool web has no free VM now", prefix=True)

    cancelled = client.delete(f"{REQUESTS}/{request_id}")

    assert cancelled.status_code == 200, cancelled.json
    assert cancelled.json["request"]["state"] == "cancelled"
    assert vms(app)["reserved"] == [] and vms(app)["assigned"] == []
    assert len(vms(app)["free"]) >= 2
    assert [action for action, _ in actions(app)] == ["request", "cancel"]
    assert client.put(ASSIGN, json={"vm_type": "web", "user": "bob"}).status_code == 200
    assert_error(client.delete(f"{REQUESTS}/{request_id}"), 409, "request", prefix=True)


def test_an_expired_request_frees_its_vms_and_assigns_none(make_app):
    app = make_app(POOLS={"web": pool(1, 4), "db": pool(0, 2)})
    admin = token_client(app, "root", roles=("admin",))
    with time_machine.travel(START, tick=False) as clock:
        client = token_client(app)
        admin.patch("/api/v1/pools/db", json={"paused": True})
        work(app)
        work(app)
        body = {"vms": {"web": 1, "db": 1}, "user": "ada", "expires_in": 60}
        request_id = client.post(REQUESTS, json=body).json["request"]["id"]
        work(app)
        assert len(vms(app)["reserved"]) == 1
        clock.shift(datetime.timedelta(seconds=60))
        work(app)
        shown = client.get(f"{REQUESTS}/{request_id}").json["request"]
    assert (shown["state"], shown["message"]) == ("expired", "waited past its expires_at")
    assert vms(app)["reserved"] == [] and vms(app)["assigned"] == []
    assert [action for action, _ in actions(app)] == ["request", "expire"]


def test_a_ready_request_cancelled_releases_its_vms(filled):
    client = token_client(filled)
    request_id = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada"}).json["request"][
        "id"
    ]
    assert len(vms(filled)["assigned"]) == 1
    cancelled = client.delete(f"{REQUESTS}/{request_id}")
    assert cancelled.json["request"]["state"] == "cancelled"
    assert vms(filled)["assigned"] == []


def test_one_request_per_idempotency_key(filled):
    client = token_client(filled)
    body = {"vms": {"web": 1}, "user": "ada"}
    headers = {"Idempotency-Key": "ask-once"}
    first = client.post(REQUESTS, json=body, headers=headers)
    again = client.post(REQUESTS, json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert len(client.get(REQUESTS).json["requests"]) == 1


def test_others_see_only_their_own_requests_and_admins_every_one(filled):
    ada = token_client(filled, "ada-agent")
    bob = token_client(filled, "bob-agent")
    admin = token_client(filled, "root", roles=("admin",))
    request_id = ada.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada"}).json["request"]["id"]
    assert_error(bob.get(f"{REQUESTS}/{request_id}"), 403, "request", prefix=True)
    assert_error(bob.delete(f"{REQUESTS}/{request_id}"), 403, "request", prefix=True)
    assert bob.get(REQUESTS).json["requests"] == []
    assert [r["id"] for r in admin.get(REQUESTS).json["requests"]] == [request_id]
    assert admin.get(REQUESTS, query_string={"user": "bob-agent"}).json["requests"] == []
    assert admin.get(REQUESTS, query_string={"state": "pending"}).json["requests"] == []
    assert_error(admin.get(f"{REQUESTS}/99999999999"), 404, "no request 99999999999")
    reader = token_client(filled, "reader", roles=())
    refused = reader.post(REQUESTS, json={"vms": {"web": 1}, "user": "x"})
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"vms": {"gpu": 1}, "user": "ada"}, 404, "vms: no pool serves vm_type gpu"),
        (
            {"vms": {"web": 5}, "user": "ada"},
            400,
            "vms: 5 VMs of web are more than its pool's max_total (4)",
        ),
        ({"vms": {"web": 0}, "user": "ada"}, 400, "vms: the count of each vm_type"),
        ({"vms": {"web": 10**30}, "user": "ada"}, 400, "vms: the count of each vm_type"),
        ({"vms": {"web": "2"}, "user": "ada"}, 400, "vms: the count of each vm_type"),
        ({"vms": {}, "user": "ada"}, 400, "vms: an object of vm_types to counts"),
        ({"vms": ["web"], "user": "ada"}, 400, "vms: an object of vm_types to counts"),
        ({"vms": {"web": 1}}, 400, "missing field: 'user'"),
        ({"vms": {"web": 1}, "user": "ada", "priority": 4}, 400, "priority: a whole number"),
        ({"vms": {"web": 1}, "user": "ada", "expires_in": 0}, 400, "expires_in: a whole"),
        (
            {"vms": {"web": 1}, "user": "ada", "expires_in": 10**6},
            400,
            "expires_in: at most 86400 seconds, not 1000000",
        ),
        ({"vms": {"web": 1}, "user": "ada", "colour": "red"}, 400, "colour"),
        (
            {"vms": {"web": 1}, "user": "ada", "cloud": "elsewhere"},
            404,
            "cloud: pool web keeps no VMs on cloud elsewhere",
        ),
    ],
)
@SQLITE_ONLY
def test_a_bad_request_is_refused_at_once_naming_what_is_wrong(filled, body, status, message):
    client = token_client(filled)
    assert_error(client.post(REQUESTS, json=body), status, message, prefix=True)
    assert client.get(REQUESTS).json["requests"] == []


def test_more_vms_than_request_max_vms_are_refused(make_app):
    app = make_app(POOLS={"web": pool(0, 40)}, REQUEST_MAX_VMS=3)
    client = token_client(app)
    refused = client.post(REQUESTS, json={"vms": {"web": 4}, "user": "ada"})
    assert_error(refused, 400, "vms: at most 3 VMs in one request, not 4")


def test_a_quota_refuses_a_request_it_could_never_serve(make_app):
    quota = [{"scope": "role", "name": "agent", "max_vms": 2}]
    app = make_app(POOLS={"web": pool(0, 4)}, QUOTAS=quota)
    client = token_client(app)
    refused = client.post(REQUESTS, json={"vms": {"web": 3}, "user": "ada"})
    assert refused.status_code == 403
    assert refused.json["message"] == (
        "quota: user tester holds 0 of 2 VMs, and asks for 3 more (rule role agent)"
    )
    assert refused.json["quota"]["key"] == "max_vms"
    assert client.post(REQUESTS, json={"vms": {"web": 2}, "user": "ada"}).status_code == 202


def test_the_estimated_wait_is_near_the_wait(make_app):
    """VMs of the Dummy cloud run once made; a pass every 15 s promotes them at the next
    one: a boot of 15 s. A request with nothing booting waits for a VM made at the next
    pass and promoted at the one after."""
    app = make_app(POOLS={"web": pool(0, 4)}, POOLS_INTERVAL=15)
    with time_machine.travel(START, tick=False) as clock:
        client = token_client(app)
        first = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada"}).json["request"]
        for _ in range(3):
            clock.shift(datetime.timedelta(seconds=15))
            work(app)
        asked_at = time.time()
        shown = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "bob"}).json["request"]
        estimate = shown["estimated_wait_s"]
        waited = 0
        while client.get(f"{REQUESTS}/{shown['id']}").json["request"]["state"] == "pending":
            clock.shift(datetime.timedelta(seconds=15))
            work(app)
            waited = time.time() - asked_at
            assert waited < 600
        assert client.get(f"{REQUESTS}/{first['id']}").json["request"]["state"] == "ready"
    assert waited / 2 <= estimate <= waited * 2, (estimate, waited)


def test_metrics_show_the_line_and_the_waits(make_app):
    app = make_app(POOLS={"web": pool(0, 4), "db": pool(0, 2)})
    client = token_client(app)
    waited = metric("dispatcher_request_wait_seconds_count", priority="1")
    client.post(REQUESTS, json={"vms": {"web": 1, "db": 1}, "user": "ada", "priority": 1})
    client.post(REQUESTS, json={"vms": {"web": 1}, "user": "bob", "priority": 3})
    scraped = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'dispatcher_requests_pending{pool="web",priority="1"} 1.0' in scraped
    assert 'dispatcher_requests_pending{pool="web",priority="3"} 1.0' in scraped
    assert 'dispatcher_requests_pending{pool="db",priority="1"} 1.0' in scraped
    work(app)
    work(app)
    scraped = app.test_client().get("/metrics").get_data(as_text=True)
    assert "dispatcher_requests_pending{" not in scraped
    assert metric("dispatcher_request_wait_seconds_count", priority="1") == waited + 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"REQUEST_MAX_VMS": 0}, "REQUEST_MAX_VMS must be a whole number"),
        (
            {"REQUEST_DEFAULT_EXPIRY": 7200, "REQUEST_MAX_EXPIRY": 3600},
            "REQUEST_DEFAULT_EXPIRY (7200) is more than REQUEST_MAX_EXPIRY (3600)",
        ),
        (
            {
                "ASSIGNMENT_BACKEND": "cistern",
                "REQUEST_WEBHOOK_URL": "https://hooks.example.org/requests",
                "LEASE_WEBHOOK_SECRET": "s",
            },
            "REQUEST_WEBHOOK_URL: requests need the local ledger (ASSIGNMENT_BACKEND='local'), "
            "not 'cistern': they are served from its pools",
        ),
        (
            {"ASSIGNMENT_BACKEND": "cistern", "REQUEST_MAX_VMS": 5},
            "REQUEST_MAX_VMS: requests need the local ledger",
        ),
    ],
)
def test_bad_request_settings_stop_the_start(settings, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", **settings})


def test_beside_cistern_a_request_is_a_400_saying_why_and_nothing_is_written(make_app, cistern):
    """No pools beside Cistern, so no line: the request is refused at once, not queued,
    and neither Cistern nor the history hears of it."""
    app = make_app(ASSIGNMENT_BACKEND="cistern", CISTERN_URL=cistern.url)
    client = token_client(app)
    rows_before = len(cistern.rows)
    answer = client.post("/api/v1/requests", json={"vms": {"web": 1}, "user": "ada"})
    assert_error(
        answer,
        400,
        "requests are served from warm pools, which only the local ledger keeps: beside "
        "Cistern (ASSIGNMENT_BACKEND=cistern) there are none",
    )
    assert len(cistern.rows) == rows_before
    with app.app_context():
        assert db.session.query(AuditEntry).filter_by(action="request").count() == 0
    assert client.get("/api/v1/requests").get_json()["requests"] == []


def test_a_ready_and_an_expired_request_are_told_to_their_webhook_signed(make_app, good):
    """Its own webhook_url hears request.ready with the request and its VMs; the setting's
    REQUEST_WEBHOOK_URL hears another's request.expired; both signed with the secret."""
    app = make_app(
        POOLS={"web": pool(1, 2), "db": pool(0, 1)},
        LEASE_WEBHOOK_SECRET="s3cret",
        REQUEST_WEBHOOK_URL=good.url("/hooks/requests"),
    )
    admin = token_client(app, "root", roles=("admin",))
    admin.patch("/api/v1/pools/db", json={"paused": True})
    with time_machine.travel(START, tick=False) as clock:
        client = token_client(app)
        work(app)
        work(app)
        own = good.url("/hooks/mine")
        ready = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "ada", "webhook_url": own})
        assert ready.status_code == 200
        body = {"vms": {"db": 1}, "user": "bob", "expires_in": 30}
        waiting = client.post(REQUESTS, json=body).json["request"]
        clock.shift(datetime.timedelta(seconds=30))
        work(app)  # expires it
        with app.app_context():
            report = webhook_delivery.run()
    assert (report.delivered, report.failed) == (2, 0)
    calls = {call["path"]: call for call in good.calls}
    assert set(calls) == {"/hooks/mine", "/hooks/requests"}
    told = json.loads(calls["/hooks/mine"]["body"])
    assert (told["event"], told["user"], told["vm_type"]) == ("request.ready", "ada", "web")
    assert told["request"]["state"] == "ready"
    assert [vm["vm_type"] for vm in told["request"]["vms"]] == ["web"]
    expired = json.loads(calls["/hooks/requests"]["body"])
    assert (expired["event"], expired["request"]["id"]) == ("request.expired", waiting["id"])
    for call in calls.values():
        signature = call["headers"]["X-Dispatcher-Signature"]
        assert signature == webhooks.sign(call["body"], "s3cret")


def test_a_webhook_url_without_a_secret_to_sign_with_is_refused(filled):
    client = token_client(filled)
    body = {"vms": {"web": 1}, "user": "ada", "webhook_url": "https://hooks.example/x"}
    assert_error(
        client.post(REQUESTS, json=body),
        400,
        "webhook_url: this dispatcher signs no webhook calls (no LEASE_WEBHOOK_SECRET)",
    )
    body["webhook_url"] = "https://hooks.example/\x00"
    assert_error(client.post(REQUESTS, json=body), 400, "webhook_url: an http", prefix=True)


def test_a_request_is_served_at_once_only_if_none_waits_ahead_of_it_in_line(make_app):
    """An older request of priority 3 waits (its db pool paused) while web has free VMs: a
    newer one of priority 1 for web is ahead of it in line, and is served at once; a newer
    one of priority 3 for web is behind it, and waits."""
    app = make_app(POOLS={"web": pool(2, 4), "db": pool(0, 1)})
    admin = token_client(app, "root", roles=("admin",))
    admin.patch("/api/v1/pools/db", json={"paused": True})
    work(app)
    work(app)
    client = token_client(app)
    older = client.post(REQUESTS, json={"vms": {"web": 1, "db": 1}, "user": "ada", "priority": 3})
    assert older.status_code == 202
    assert len(vms(app)["free"]) == 1  # one of the two set aside for it
    behind = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "bob", "priority": 3})
    assert behind.status_code == 202
    assert behind.json["request"]["position"] == 2
    first = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "cy", "priority": 1})
    assert first.status_code == 200, first.json


def test_a_request_a_quota_refuses_when_served_fails_and_frees_its_vms(make_app, good):
    """Two VMs at once for each agent. Two requests wait (2 and 1 VMs: each allowed when
    made); once the VMs are made the first is served, and the second, which would make
    three, fails with the quota's reason, its VM back in the pool, its webhook told."""
    quota = [{"scope": "role", "name": "agent", "max_vms": 2}]
    app = make_app(
        POOLS={"web": pool(0, 3)},
        QUOTAS=quota,
        LEASE_WEBHOOK_SECRET="s3cret",
        REQUEST_WEBHOOK_URL=good.url("/hooks/requests"),
    )
    client = token_client(app)
    first = client.post(REQUESTS, json={"vms": {"web": 2}, "user": "ada"}).json["request"]
    second = client.post(REQUESTS, json={"vms": {"web": 1}, "user": "bob"}).json["request"]
    work(app)
    work(app)
    served = client.get(f"{REQUESTS}/{first['id']}").json["request"]
    failed = client.get(f"{REQUESTS}/{second['id']}").json["request"]
    assert served["state"] == "ready"
    assert failed["state"] == "failed"
    assert failed["message"] == "quota: user tester holds 2 of 2 VMs (rule role agent)"
    assert vms(app)["reserved"] == []
    assert len(vms(app)["assigned"]) == 2 and len(vms(app)["free"]) == 1
    with app.app_context():
        webhook_delivery.run()
    events = [json.loads(call["body"])["event"] for call in good.calls]
    assert sorted(events) == ["request.failed", "request.ready"]


def test_a_vm_freed_during_a_pass_goes_to_the_first_in_line_not_to_a_later_one(make_app):
    """Two requests of one priority for a web and a db VM, the only db VM held: while the
    worker's pass serves the line, the db VM is released (by another process) after the
    first request's turn and before the second's. The second does not take it: it waits
    for the next pass, where the first in line is served, then the second waits on."""
    app = make_app(POOLS={"web": pool(2, 4), "db": pool(1, 1)})
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("SQLite has one writer: no VM is freed while the pass writes")
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    other = make_app(POOLS={"web": pool(2, 4), "db": pool(1, 1)}, SQLALCHEMY_DATABASE_URI=database)
    work(app)
    work(app)
    client = token_client(app)
    held = client.put(ASSIGN, json={"vm_type": "db", "user": "zed"})
    assert held.status_code == 200, held.json
    ask = {"vms": {"web": 1, "db": 1}, "priority": 2}
    first = client.post(REQUESTS, json={**ask, "user": "ada"}).json["request"]["id"]
    second = client.post(REQUESTS, json={**ask, "user": "bob"}).json["request"]["id"]

    with app.app_context():
        engine = db.engine
    freed = []

    def release_after_the_first_turn(_connection) -> None:
        # The first commit of the pass ends the first request's turn (nothing expired).
        if not freed:
            with other.app_context():
                freed.append(ledger.release(held.json["id"]))
                db.session.commit()

    sqlalchemy.event.listen(engine, "commit", release_after_the_first_turn)
    try:
        with app.app_context():
            operations.serve_requests()
    finally:
        sqlalchemy.event.remove(engine, "commit", release_after_the_first_turn)
    assert freed and freed[0] is not None
    states = {i: client.get(f"{REQUESTS}/{i}").json["request"]["state"] for i in (first, second)}
    assert states == {first: "pending", second: "pending"}

    with app.app_context():
        operations.serve_requests()
    states = {i: client.get(f"{REQUESTS}/{i}").json["request"]["state"] for i in (first, second)}
    assert states == {first: "ready", second: "pending"}
    assert ("db", "ada") in {(pool_, user) for pool_, user, _ in vms(app)["assigned"]}
