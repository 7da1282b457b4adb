"""Quotas on libcloud's Dummy cloud, SQLite and PostgreSQL: the QUOTAS setting, which rule
binds whom, each limit's refusal, the admins' rules changed live, every caller's standing
agreeing with the ledger, and exactly k of many concurrent assigns under a limit of k.
(gunicorn with four workers: test_quotas_concurrency.py.)"""

import datetime
import threading

import pytest
import sqlalchemy
import time_machine
from conftest import ERROR_KEYS, SQLITE_ONLY, metric, token_client

from dispatcher import create_app, pools
from dispatcher.config import DUMMY_FARM
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.models import ASSIGNED, Assignment, AuditEntry, Span
from dispatcher.worker import pool_pass

ASSIGN = "/api/v1/vm/action/assign"
RELEASE = "/api/v1/vm/action/release"
EXTEND = "/api/v1/vm/action/extend"
ME = "/api/v1/quotas/me"
CLOUD = {"cloud": "default", "image": "1", "size": "1"}
START = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


def pools_of(*names, ready=4) -> dict:
    return {name: {"clouds": [CLOUD], "min_ready": ready, "max_total": ready} for name in names}


def filled(app):
    """The app with its pools filled: a pass makes the VMs, the next finds them running."""
    with app.app_context():
        for _ in range(2):
            pool_pass.run(pools.every())
    return app


@pytest.fixture
def quota_app(make_app):
    """Pools web and gpu of 6 free VMs each; make(QUOTAS=..., **more) builds it."""

    def make(quotas, ready=6, **more):
        return filled(make_app(POOLS=pools_of("web", "gpu", ready=ready), QUOTAS=quotas, **more))

    return make


def take(client, vm_type="web", **body):
    return client.put(ASSIGN, json={"user": "someone", "vm_type": vm_type, **body})


def assert_refused(response, message: str, **quota) -> dict:
    """A quota's 403: the envelope, the message, and the fields of its ``quota``."""
    body = response.get_json()
    assert response.status_code == 403, body
    assert set(body) == ERROR_KEYS | {"quota"}
    assert body["message"] == message
    assert set(body["quota"]) == {"scope", "name", "pool", "key", "limit", "used"}
    for key, value in quota.items():
        assert body["quota"][key] == value, (key, body["quota"])
    return body


def held(app, holder: str) -> list[Assignment]:
    with app.app_context():
        return list(
            db.session.scalars(
                sqlalchemy.select(Assignment).where(
                    Assignment.assigned_by == holder, Assignment.status == ASSIGNED
                )
            )
        )


def standing(client, pool=None) -> dict:
    """The caller's entry of /quotas/me for ``pool`` (None: any pool)."""
    answer = client.get(ME)
    assert answer.status_code == 200, answer.get_json()
    return next(entry for entry in answer.get_json()["quota"]["pools"] if entry["pool"] == pool)


def assert_standing_agrees(app, client, username: str) -> None:
    """/quotas/me counts what the ledger holds for the caller, in any pool and in each."""
    rows = held(app, username)
    answer = client.get(ME).get_json()["quota"]
    for entry in answer["pools"]:
        counted_in = entry["max_vms"]["rule"] and entry["max_vms"]["rule"]["pool"]
        expected = [row for row in rows if counted_in in (None, row.pool or row.recipe)]
        assert entry["max_vms"]["used"] == len(expected), entry


def quota_history(app) -> list[tuple]:
    with app.app_context():
        entries = db.session.scalars(
            sqlalchemy.select(AuditEntry).where(AuditEntry.outcome == "quota")
        )
        return [(entry.action, entry.caller, entry.vm_type, entry.message) for entry in entries]


# -- the setting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quotas", "message"),
    [
        ({"scope": "default"}, "QUOTAS must be a list of rules ({'scope': ..., limits})"),
        ([{"scope": "team", "name": "x"}], "QUOTAS[0]: scope: one of user, role, default"),
        ([{"max_vms": 1}], "QUOTAS[0]: missing field: 'scope'"),
        (
            [{"scope": "default", "max_vms": -1}],
            "QUOTAS[0]: max_vms: a whole number from 0 to 1000000",
        ),
        (
            [{"scope": "default", "max_vms": 2.5}],
            "QUOTAS[0]: max_vms: a whole number from 0 to 1000000",
        ),
        (
            [{"scope": "default", "max_vms": 10**4000}],
            "QUOTAS[0]: max_vms: a whole number from 0 to 1000000",
        ),
        (
            [{"scope": "default", "max_vm_hours": float("inf")}],
            "QUOTAS[0]: max_vm_hours: a number from 0 to 1000000000",
        ),
        (
            [{"scope": "default", "period": 10}],
            "QUOTAS[0]: period: a whole number of seconds from 60 to 315360000",
        ),
        (
            [{"scope": "default", "max_vm": 1}],
            "QUOTAS[0]: max_vm: not a field here (max_lease, max_vm_hours, max_vms, name, "
            "period, pool, pools, scope)",
        ),
        ([{"scope": "default", "pool": "nope"}], "QUOTAS[0]: pool: no pool is called nope"),
        (
            [{"scope": "role", "name": "agent", "pools": ["web", "x"]}],
            "QUOTAS[0]: pools: no pool is called x",
        ),
        ([{"scope": "default", "name": "all"}], "QUOTAS[0]: name: a default rule takes no name"),
        ([{"scope": "role"}], "QUOTAS[0]: name: a role rule takes the name of the role"),
        (
            [{"scope": "user", "name": "ada"}, {"scope": "user", "name": "ada", "max_vms": 1}],
            "QUOTAS[1]: a second rule for user ada",
        ),
    ],
)
def test_a_bad_quotas_setting_stops_the_start_naming_the_rule_and_field(quotas, message):
    config = {"CLOUD_FARM": DUMMY_FARM, "POOLS": pools_of("web"), "QUOTAS": quotas}
    with pytest.raises(ConfigurationError) as raised:
        create_app(config)
    assert str(raised.value) == message


def test_quotas_beside_cistern_are_a_configuration_error():
    config = {
        "CLOUD_FARM": DUMMY_FARM,
        "ASSIGNMENT_BACKEND": "cistern",
        "CISTERN_URL": "http://127.0.0.1:9/",
        "QUOTAS": [{"scope": "default", "max_vms": 1}],
    }
    with pytest.raises(ConfigurationError) as raised:
        create_app(config)
    assert str(raised.value) == (
        "QUOTAS needs the local ledger (ASSIGNMENT_BACKEND='local'), which counts what each "
        "caller holds"
    )


# -- max_vms ---------------------------------------------------------------------------


def test_max_vms_refuses_the_assign_beyond_it_audited_and_counted(quota_app):
    app = quota_app([{"scope": "role", "name": "agent", "max_vms": 2}])
    ada = token_client(app, "ada")
    refusals = metric("dispatcher_quota_refusals_total", limit="max_vms", scope="role")
    counted = metric(
        "dispatcher_assignments_total", cloud="default", action="assign", outcome="quota"
    )
    assert take(ada).status_code == 200
    assert_standing_agrees(app, ada, "ada")
    assert take(ada, "gpu").status_code == 200  # a rule of no pool counts every pool
    assert_standing_agrees(app, ada, "ada")
    body = assert_refused(
        take(ada),
        "quota: user ada holds 2 of 2 VMs (rule role agent)",
        scope="role",
        name="agent",
        pool=None,
        key="max_vms",
        limit=2,
        used=2,
    )
    assert body["status_code"] == 403
    assert len(held(app, "ada")) == 2
    assert_standing_agrees(app, ada, "ada")
    assert quota_history(app) == [
        ("assign", "ada", "web", "quota: user ada holds 2 of 2 VMs (rule role agent)")
    ]
    assert metric("dispatcher_quota_refusals_total", limit="max_vms", scope="role") == refusals + 1
    assert (
        metric("dispatcher_assignments_total", cloud="default", action="assign", outcome="quota")
        == counted + 1
    )
    # A dry run is told the same, and nothing is recorded or counted.
    assert take(ada, emulate=True).status_code == 403
    assert len(quota_history(app)) == 1
    assert metric("dispatcher_quota_refusals_total", limit="max_vms", scope="role") == refusals + 1


def test_the_quota_binds_the_caller_whatever_user_the_body_names(quota_app):
    app = quota_app([{"scope": "default", "max_vms": 1}])
    ada = token_client(app, "ada")
    assert take(ada, user="first").status_code == 200
    assert take(ada, user="second").status_code == 403
    # Another caller has a quota of its own.
    assert take(token_client(app, "bob")).status_code == 200


def test_an_assign_by_node_counts_with_those_by_type(quota_app):
    app = quota_app([{"scope": "default", "max_vms": 2}])
    ada = token_client(app, "ada")
    assert take(ada).status_code == 200
    by_node = ada.put(
        f"{ASSIGN}/fake_driver", json={"node": "1", "user": "someone", "vm_type": "build"}
    )
    assert by_node.status_code == 200, by_node.get_json()
    assert_refused(
        ada.put(f"{ASSIGN}/fake_driver", json={"node": "2", "user": "u", "vm_type": "build"}),
        "quota: user ada holds 2 of 2 VMs (rule default)",
        key="max_vms",
        used=2,
    )
    # Released, its place is free again.
    assert ada.put(f"{RELEASE}/fake_driver", json={"node": "1"}).status_code == 200
    assert take(ada).status_code == 200


def test_a_rule_for_one_pool_counts_in_that_pool_only(quota_app):
    app = quota_app(
        [
            {"scope": "role", "name": "agent", "max_vms": 3},
            {"scope": "role", "name": "agent", "pool": "gpu", "max_vms": 1},
        ]
    )
    ada = token_client(app, "ada")
    assert take(ada, "gpu").status_code == 200
    assert_standing_agrees(app, ada, "ada")
    assert_refused(
        take(ada, "gpu"),
        "quota: user ada holds 1 of 1 VMs of pool gpu (rule role agent)",
        pool="gpu",
        limit=1,
        used=1,
    )
    assert take(ada).status_code == 200
    assert take(ada).status_code == 200
    assert_refused(take(ada), "quota: user ada holds 3 of 3 VMs (rule role agent)", pool=None)
    assert_standing_agrees(app, ada, "ada")
    assert standing(ada, "gpu")["max_vms"]["used"] == 1
    assert standing(ada, "web")["max_vms"]["used"] == 3


def test_the_most_specific_rule_wins_and_of_several_roles_the_most_generous(quota_app):
    app = quota_app(
        [
            {"scope": "default", "max_vms": 1},
            {"scope": "role", "name": "agent", "max_vms": 2},
            {"scope": "role", "name": "admin", "max_vms": 3},
            {"scope": "user", "name": "cy", "max_vms": 4},
            {"scope": "user", "name": "cy", "pool": "gpu", "max_vms": 0},
        ]
    )
    agent = token_client(app, "ada")
    both = token_client(app, "bo", roles=("agent", "admin"))
    cy = token_client(app, "cy")
    assert standing(agent)["max_vms"]["limit"] == 2
    assert standing(both)["max_vms"]["limit"] == 3
    assert standing(both)["max_vms"]["rule"] == {"scope": "role", "name": "admin", "pool": None}
    assert standing(cy)["max_vms"]["limit"] == 4
    assert standing(cy, "gpu")["max_vms"] == {
        "limit": 0,
        "used": 0,
        "left": 0,
        "rule": {"scope": "user", "name": "cy", "pool": "gpu"},
    }
    assert_refused(
        take(cy, "gpu"), "quota: user cy holds 0 of 0 VMs of pool gpu (rule user cy)", limit=0
    )


def test_admins_are_bound_too_unless_a_rule_says_otherwise(quota_app):
    app = quota_app([{"scope": "default", "max_vms": 1}])
    boss = token_client(app, "boss", roles=("admin",))
    assert take(boss).status_code == 200
    assert_refused(take(boss), "quota: user boss holds 1 of 1 VMs (rule default)")
    admins_free = {"max_vms": None}
    assert boss.put("/api/v1/quotas/role/admin", json=admins_free).status_code == 200
    assert take(boss).status_code == 200
    assert standing(boss)["max_vms"]["limit"] is None


# -- rules changed live ----------------------------------------------------------------


def test_an_override_applies_at_once_in_every_app_and_its_removal_restores_the_setting(
    quota_app, database_url
):
    """Two apps on one database, as two workers: an admin's rule set through one binds at
    the next request of the other, without a restart."""
    app = quota_app([{"scope": "role", "name": "agent", "max_vms": 1}])
    other = create_app(
        {
            **app.config,
            "POOLS": pools_of("web", "gpu", ready=6),
            "SQLALCHEMY_DATABASE_URI": database_url,
        }
    )
    boss = token_client(app, "boss", roles=("admin",))
    ada = token_client(app, "ada")
    ada_elsewhere = token_client(other, "ada")
    assert take(ada).status_code == 200
    assert take(ada_elsewhere).status_code == 403

    set_rule = boss.put("/api/v1/quotas/user/ada", json={"max_vms": 3})
    assert set_rule.status_code == 200
    rule = set_rule.get_json()["rule"]
    assert rule["max_vms"] == 3
    assert (rule["scope"], rule["name"], rule["pool"], rule["source"]) == (
        "user",
        "ada",
        None,
        "database",
    )
    assert rule["updated_by"] == "boss"
    assert take(ada_elsewhere).status_code == 200
    assert take(ada).status_code == 200
    assert_refused(take(ada_elsewhere), "quota: user ada holds 3 of 3 VMs (rule user ada)")

    cleared = boss.delete("/api/v1/quotas/user/ada")
    assert cleared.get_json() == {"status": "ok", "result": "quota rule of user ada removed"}
    assert_refused(take(ada_elsewhere), "quota: user ada holds 3 of 1 VMs (rule role agent)")
    assert standing(ada)["max_vms"]["left"] == 0
    with other.app_context():
        db.engine.dispose()


def test_clearing_an_override_of_a_setting_rule_answers_the_rule_that_applies_again(quota_app):
    app = quota_app([{"scope": "role", "name": "agent", "max_vms": 1}])
    boss = token_client(app, "boss", roles=("admin",))
    assert boss.put("/api/v1/quotas/role/agent", json={"max_vms": 5}).status_code == 200
    listed = boss.get("/api/v1/quotas").get_json()["rules"]
    assert [(rule["scope"], rule["name"], rule["max_vms"], rule["source"]) for rule in listed] == [
        ("role", "agent", 5, "database")
    ]
    answer = boss.delete("/api/v1/quotas/role/agent").get_json()
    assert answer["rule"]["max_vms"] == 1
    assert answer["rule"]["source"] == "setting"
    again = boss.delete("/api/v1/quotas/role/agent")
    assert again.status_code == 404
    assert again.get_json()["message"] == "no quota rule of role agent was set here"


@pytest.fixture
def still_clock():
    """The dispatcher's clock standing still: VM-hours held do not grow between two reads."""
    with time_machine.travel(START, tick=False):
        yield


def test_the_rules_listed_for_admins_carry_what_they_bind_uses(quota_app, still_clock):
    app = quota_app([{"scope": "role", "name": "agent", "max_vms": 5, "pools": ["web"]}])
    ada = token_client(app, "ada")
    bob = token_client(app, "bob")
    boss = token_client(app, "boss", roles=("admin",))
    assert boss.put("/api/v1/quotas/default", json={"pool": "gpu", "max_vms": 2}).status_code == 200
    for client in (ada, ada, bob):
        assert take(client).status_code == 200
    rules = boss.get("/api/v1/quotas").get_json()["rules"]
    assert [(rule["scope"], rule["name"], rule["pool"], rule["used"]["vms"]) for rule in rules] == [
        ("role", "agent", None, 3),
        ("default", None, "gpu", 0),
    ]
    one = boss.get("/api/v1/quotas/role/agent").get_json()["rules"]
    assert one == [rules[0]]
    assert one[0]["pools"] == ["web"]
    assert boss.get("/api/v1/quotas/default").get_json()["rules"] == [rules[1]]
    assert boss.get("/api/v1/quotas/user/ada").get_json()["rules"] == []


@pytest.mark.parametrize(
    ("url", "body", "status", "message"),
    [
        (
            "/api/v1/quotas/user/ada",
            {"max_vms": -1},
            400,
            "max_vms: a whole number from 0 to 1000000",
        ),
        (
            "/api/v1/quotas/user/ada",
            {"max_vms": 1.5},
            400,
            "max_vms: a whole number from 0 to 1000000",
        ),
        (
            "/api/v1/quotas/user/ada",
            {"max_vms": "3"},
            400,
            "max_vms: a whole number from 0 to 1000000",
        ),
        (
            "/api/v1/quotas/user/ada",
            {"max_vms": True},
            400,
            "max_vms: a whole number from 0 to 1000000",
        ),
        ("/api/v1/quotas/user/ada", {"pool": "nope"}, 400, "pool: no pool is called nope"),
        (
            "/api/v1/quotas/role/agent",
            {"pools": ["web", "nope"]},
            400,
            "pools: no pool is called nope",
        ),
        ("/api/v1/quotas/role/agent", {"pools": "web"}, 400, "pools: list of pool names"),
        (
            "/api/v1/quotas/role/agent",
            {"max_vms": 1, "max_lease_s": 5},
            400,
            "max_lease_s: not a field here (auth_token, max_lease, max_vm_hours, max_vms, "
            "period, pool, pools)",
        ),
        (
            "/api/v1/quotas/default",
            {"max_vm_hours": -0.5},
            400,
            "max_vm_hours: a number from 0 to 1000000000",
        ),
        (
            "/api/v1/quotas/default",
            {"max_lease": 0},
            400,
            "max_lease: a whole number of seconds from 1 to 315360000",
        ),
        (
            "/api/v1/quotas/default",
            {"period": None},
            400,
            "period: a whole number of seconds from 60 to 315360000",
        ),
        (
            "/api/v1/quotas/default",
            [1],
            400,
            "Malformed JSON stream: the body must be a JSON object",
        ),
        ("/api/v1/quotas/user/nobody", {"max_vms": 1}, 404, "no user is called nobody"),
        ("/api/v1/quotas/role/owners", {"max_vms": 1}, 404, "no role is called owners"),
        ("/api/v1/quotas/team/x", {"max_vms": 1}, 404, "Page not found"),
    ],
)
@SQLITE_ONLY
def test_bad_rules_are_refused_naming_the_field(quota_app, url, body, status, message):
    app = quota_app(None)
    token_client(app, "ada")
    boss = token_client(app, "boss", roles=("admin",))
    answer = boss.put(url, json=body)
    assert answer.status_code == status, answer.get_json()
    assert answer.get_json()["message"] == message
    assert boss.get("/api/v1/quotas").get_json()["rules"] == []


def test_a_number_of_five_thousand_digits_is_a_400(quota_app):
    boss = token_client(quota_app(None), "boss", roles=("admin",))
    answer = boss.put(
        "/api/v1/quotas/default",
        data='{"max_vms": ' + "9" * 5000 + "}",
        content_type="application/json",
    )
    assert answer.status_code == 400
    assert answer.get_json()["message"] == "Malformed JSON stream"


def test_only_admins_read_and_change_the_rules_and_anyone_reads_their_own(quota_app):
    app = quota_app([{"scope": "default", "max_vms": 2}])
    ada = token_client(app, "ada")
    for method in ("get", "put", "delete"):
        answer = ada.open("/api/v1/quotas/default", method=method.upper(), json={"max_vms": 9})
        assert answer.status_code == 403, method
    assert ada.get("/api/v1/quotas").status_code == 403
    me = ada.get(ME).get_json()["quota"]
    assert (me["user"], me["roles"], me["enabled"]) == ("ada", ["agent"], True)
    assert [entry["pool"] for entry in me["pools"]] == [None, "web", "gpu"]
    assert app.test_client().get(ME).status_code == 401


def test_beside_cistern_rules_cannot_be_set_and_nothing_binds(make_app, cistern):
    app = make_app(ASSIGNMENT_BACKEND="cistern", CISTERN_URL=cistern.url)
    boss = token_client(app, "boss", roles=("admin",))
    answer = boss.put("/api/v1/quotas/default", json={"max_vms": 1})
    assert answer.status_code == 400
    assert answer.get_json()["message"] == (
        "quotas need the local ledger (ASSIGNMENT_BACKEND=local), which counts what each "
        "caller holds"
    )
    assert boss.get(ME).get_json()["quota"]["enabled"] is False


# -- pools and max_lease ---------------------------------------------------------------


def test_a_role_without_a_pool_is_refused_naming_it_and_with_it_served(quota_app):
    app = quota_app([{"scope": "role", "name": "agent", "pools": ["web"]}])
    ada = token_client(app, "ada")
    assert_refused(
        take(ada, "gpu"),
        "quota: user ada may not use pool gpu (rule role agent)",
        key="pools",
        limit=["web"],
        used=None,
    )
    assert standing(ada, "gpu")["allowed"] is False
    boss = token_client(app, "boss", roles=("admin",))
    assert boss.put("/api/v1/quotas/role/agent", json={"pools": ["web", "gpu"]}).status_code == 200
    assert take(ada, "gpu").status_code == 200
    assert standing(ada, "gpu")["allowed"] is True
    assert_standing_agrees(app, ada, "ada")
    # A vm_type that is no pool's is not the pools limit's to judge.
    assert boss.put("/api/v1/quotas/role/agent", json={"pools": []}).status_code == 200
    by_node = ada.put(f"{ASSIGN}/fake_driver", json={"node": "1", "user": "u", "vm_type": "x"})
    assert by_node.status_code == 200


def test_max_lease_refuses_a_longer_lease_and_shortens_a_longer_default(quota_app):
    app = quota_app(
        [{"scope": "role", "name": "agent", "max_lease": 600}],
        DEFAULT_LEASE=3600,
    )
    ada = token_client(app, "ada")
    assert_refused(
        take(ada, lease=601),
        "quota: user ada may lease for at most 600 s, not 601 s (rule role agent)",
        key="max_lease",
        limit=600,
        used=601,
    )
    with time_machine.travel(START, tick=False):
        ada = token_client(app, "ada")
        answer = take(ada)
        assert answer.status_code == 200
        assert answer.get_json()["expires_at"] == "2026-12-01T09:10:00+00:00"
        extended = ada.put(
            f"{EXTEND}/default", json={"node": answer.get_json()["id_vm"], "lease": 900}
        )
    assert_refused(
        extended, "quota: user ada may lease for at most 600 s, not 900 s (rule role agent)"
    )


# -- max_vm_hours, on a moved clock ----------------------------------------------------


def test_max_vm_hours_counts_whole_leases_and_lets_go_as_the_period_moves_on(quota_app):
    """One VM-hour a day: a lease of 40 minutes, then no second one until the first is
    released and the day has moved on far enough; /quotas/me agrees at every step."""
    app = quota_app([{"scope": "role", "name": "agent", "max_vm_hours": 1}])
    with time_machine.travel(START, tick=False) as clock:
        ada = token_client(app, "ada")
        first = take(ada, lease=2400)
        assert first.status_code == 200
        node = first.get_json()["id_vm"]
        assert standing(ada)["max_vm_hours"] == {
            "limit": 1.0,
            "used": 0.6667,
            "left": 0.3333,
            "period": 86400,
            "rule": {"scope": "role", "name": "agent", "pool": None},
        }

        clock.shift(datetime.timedelta(minutes=10))
        assert_refused(
            take(ada, lease=2400),
            "quota: user ada has held 0.67 of 1 VM-hours in 24 h; a lease of 2400 s would make "
            "it 1.33 (rule role agent)",
            key="max_vm_hours",
            limit=1.0,
            used=0.6667,
        )
        # An extend that would pass the hour is refused the same way; one within it is not.
        assert_refused(
            ada.put(f"{EXTEND}/default", json={"node": node, "lease": 3600}),
            "quota: user ada has held 0.17 of 1 VM-hours in 24 h; a lease of 3600 s from now "
            "would make it 1.17 (rule role agent)",
        )
        assert ada.put(f"{EXTEND}/default", json={"node": node, "lease": 1800}).status_code == 200
        assert standing(ada)["max_vm_hours"]["used"] == 0.6667  # 10 min held, 30 to come

        clock.shift(datetime.timedelta(minutes=30))
        assert ada.put(f"{RELEASE}/default", json={"node": node}).status_code == 200
        assert standing(ada)["max_vm_hours"]["used"] == 0.6667
        assert take(ada, lease=2400).status_code == 403

        # A day after the first assign, its first 10 minutes are out of the period: 30
        # minutes held and 40 more are still too many; 10 minutes later they are not.
        clock.shift(datetime.timedelta(days=1, minutes=-30))
        ada = token_client(app, "ada")  # the first token has expired meanwhile
        assert standing(ada)["max_vm_hours"]["used"] == 0.5
        assert take(ada, lease=2400).status_code == 403
        clock.shift(datetime.timedelta(minutes=10))
        assert standing(ada)["max_vm_hours"]["used"] == 0.3333
        assert take(ada, lease=2400).status_code == 200
        assert standing(ada)["max_vm_hours"]["used"] == 1.0
        assert standing(ada)["max_vm_hours"]["left"] == 0
    with app.app_context():
        assigned = sqlalchemy.select(Span).where(Span.status == ASSIGNED).order_by(Span.id)
        holdings = db.session.scalars(assigned).all()
        assert [(holding.holder, holding.ended_at is None) for holding in holdings] == [
            ("ada", False),
            ("ada", True),
        ]


def test_an_assignment_without_a_lease_counts_as_long_as_it_is_held(quota_app):
    app = quota_app([{"scope": "default", "max_vm_hours": 1, "period": 7200}])
    with time_machine.travel(START, tick=False) as clock:
        ada = token_client(app, "ada")
        assert take(ada).status_code == 200
        clock.shift(datetime.timedelta(minutes=45))
        assert standing(ada)["max_vm_hours"]["used"] == 0.75
        assert take(ada, lease=1800).status_code == 403  # 45 + 30 minutes
        assert take(ada, lease=900).status_code == 200  # 45 + 15
        clock.shift(datetime.timedelta(minutes=1))
        assert_refused(
            take(ada),
            "quota: user ada has held 1.02 of 1 VM-hours in 2 h (rule default)",
            used=1.0167,
        )


# -- concurrency -----------------------------------------------------------------------


def test_of_thirty_concurrent_assigns_under_a_limit_of_three_exactly_three_win(quota_app):
    """Thirty threads, each with its own connection to the database, assign by type at
    once for one caller: the caller's lock makes each count follow the commit before it."""
    app = quota_app([{"scope": "role", "name": "agent", "max_vms": 3}], ready=12)
    token_client(app, "ada")
    clients = [token_client(app, "ada") for _ in range(30)]
    start = threading.Barrier(len(clients))
    statuses = []

    def race(client):
        start.wait()
        statuses.append(take(client).status_code)

    threads = [threading.Thread(target=race, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 3 + [403] * 27
    assert len(held(app, "ada")) == 3
    assert standing(clients[0])["max_vms"]["used"] == 3


# -- the commands ----------------------------------------------------------------------


def test_the_commands_show_set_and_clear_the_rules_as_the_api_does(quota_app):
    app = quota_app([{"scope": "role", "name": "agent", "max_vms": 3}])
    ada = token_client(app, "ada")
    assert take(ada).status_code == 200
    runner = app.test_cli_runner()

    def run(*args, code=0):
        result = runner.invoke(args=["quotas", *args])
        assert result.exit_code == code, result.output
        return result.output

    assert (
        run("show") == "role agent\tany pool\tmax_vms=3\tsetting\tused: 1 VMs, 0 VM-hours in 24 h\n"
    )
    assert run("set", "user", "ada", "--max-vms", "1", "--max-lease", "none", "--pools", "web") == (
        'user ada\tany pool\tmax_vms=1 max_lease=null pools=["web"]\tdatabase\t'
        "used: 1 VMs, 0 VM-hours in 24 h\n"
    )
    assert_refused(take(ada), "quota: user ada holds 1 of 1 VMs (rule user ada)")
    assert run("show", "--user", "ada").splitlines()[:2] == [
        "user ada (roles: agent)",
        "any pool\tmax_vms=1 (used 1) max_vm_hours=no limit (used 0) max_lease=no limit",
    ]
    assert "Error: max_vms: a whole number from 0 to 1000000" in run(
        "set", "role", "agent", "--max-vms", "1.5", code=1
    )
    assert run("set", "default", "--pool", "gpu", "--max-vms", "2").startswith(
        "default\tgpu\tmax_vms=2\tdatabase"
    )
    assert "Error: pool: no pool is called gpu2" in run(
        "set", "default", "--pool", "gpu2", "--max-vms", "2", code=1
    )
    assert "Error: no user is called nobody" in run(
        "set", "user", "nobody", "--max-vms", "1", code=1
    )
    assert "Error: the default rule takes no name" in run("set", "default", "all", code=2)
    assert "Error: a role rule needs the name of the role" in run("clear", "role", code=2)
    assert run("clear", "user", "ada") == "removed\n"
    assert run("clear", "default", "--pool", "gpu") == "removed\n"
    assert "Error: no quota rule of user ada was set here" in run("clear", "user", "ada", code=1)
    assert take(ada).status_code == 200


# -- what a quota costs ----------------------------------------------------------------


def statements_of_an_assign(app) -> list[str]:
    """The SQL statements of one assign by type, after a first one has warmed the caller's
    token up."""
    client = token_client(app, "ada")
    assert take(client).status_code == 200
    sent = []

    def count(conn, cursor, statement, *args):
        sent.append(statement.split()[0].upper())

    with app.app_context():
        engine = db.engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", count)
    try:
        assert take(client).status_code == 200
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", count)
    return sent


@pytest.mark.parametrize(
    ("quotas", "more"),
    [
        # A rule that binds nobody here: no lock, no count.
        ([{"scope": "user", "name": "somebody-else", "max_vms": 1}], 0),
        # VMs at once: the caller's lock and one count.
        ([{"scope": "default", "max_vms": 10}], 2),
        # And VM-hours: the assigned spans of the period too.
        ([{"scope": "default", "max_vms": 10, "max_vm_hours": 100}], 3),
        # A role's rule: the caller's roles as well.
        ([{"scope": "role", "name": "agent", "max_vms": 10}], 3),
    ],
)
def test_a_quota_adds_only_the_statements_it_needs_to_an_assign(quota_app, quotas, more):
    off = statements_of_an_assign(quota_app(None))
    on = statements_of_an_assign(quota_app(quotas))
    assert len(on) == len(off) + more, (off, on)
