"""Quotas under a rush: gunicorn with four workers on PostgreSQL, a warm pool of 50 free
VMs and `max_vms` 3 for the role agent. Of 200 concurrent assigns by type exactly 3 per
caller win, and an admin's override applies at once in every worker."""

import os
from collections import Counter

import pytest
import requests
import sqlalchemy
from conftest import ERROR_KEYS, app_of_server, settings_file
from helpers import PASSWORD_SALT, SECRET_KEY, Gunicorn
from sqlalchemy import func, select

from dispatcher import auth, pools
from dispatcher.extensions import db
from dispatcher.models import ADMIN, AGENT, ASSIGNED, Assignment, AuditEntry
from dispatcher.worker import pool_pass
from harness.gunicorn_server import race

pytestmark = pytest.mark.slow

POOL = "web"
READY = 50
CLIENTS = 200
LIMIT = 3
QUOTAS = [{"scope": "role", "name": AGENT, "max_vms": LIMIT}]
POOLS = {
    POOL: {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": READY,
        "max_total": READY,
        # A release keeps the VM free in the pool: the Dummy cloud's nodes live in the
        # process that made them, not in gunicorn's workers.
        "release": "reuse",
    }
}
USERS = [f"agent-{index}" for index in range(10)]


@pytest.fixture
def settings():
    """What the test's app and the server are configured with besides the defaults."""
    return {"POOLS": POOLS, "QUOTAS": QUOTAS}


@pytest.fixture
def tokens(postgresql_url, settings) -> dict:
    """The test's schema with the pool filled (50 free VMs of the Dummy cloud, which an
    assign by type never calls), ten agents and an admin; their tokens by name."""
    app = app_of_server(postgresql_url, **settings)
    with app.app_context():
        for _ in range(2):
            pool_pass.run(pools.every())
        made = {name: auth.create_user(name, "racer-password", roles=(AGENT,)) for name in USERS}
        made["boss"] = auth.create_user("boss", "boss-password", roles=(ADMIN,))
        found = {name: user.get_auth_token() for name, user in made.items()}
        free = db.session.scalar(select(func.count()).where(Assignment.pool == POOL))
        assert free == READY
    with app.app_context():
        db.engine.dispose()
    return found


@pytest.fixture
def server(tmp_path, postgresql_url, settings, tokens):
    """gunicorn with four workers on the test's schema, each worker warmed up."""
    environment = {
        **os.environ,
        "DATABASE_URL": postgresql_url,
        "DISPATCHER_SECRET_KEY": SECRET_KEY,
        "DISPATCHER_PASSWORD_SALT": PASSWORD_SALT,
        "DISPATCHER_SETTINGS": str(settings_file(tmp_path / "settings.py", **settings)),
        "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    started = Gunicorn(tmp_path, environment)
    try:
        started.warm_up(tokens[USERS[0]], path="/api/v1/quotas/me")
        yield started
    finally:
        started.stop()
        print(started.output())


@pytest.fixture
def engine(postgresql_url):
    engine = sqlalchemy.create_engine(postgresql_url)
    yield engine
    engine.dispose()


def rush(server, tokens: list[str]) -> list:
    """CLIENTS concurrent assigns by type, the i-th with ``tokens[i % len(tokens)]``."""
    return race(
        CLIENTS,
        lambda index, session: session.put(
            f"{server.base}/vm/action/assign",
            json={"vm_type": POOL, "user": f"user-{index}"},
            headers={"X-Auth-Token": tokens[index % len(tokens)]},
            timeout=60,
        ),
    )


def held(engine) -> Counter:
    """How many VMs each caller holds, in the ledger."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Assignment.assigned_by, func.count())
            .where(Assignment.status == ASSIGNED)
            .group_by(Assignment.assigned_by)
        ).all()
    return Counter(dict(rows))


def me(server, session, token: str) -> dict:
    answer = session.get(f"{server.base}/quotas/me", headers={"X-Auth-Token": token}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["quota"]["pools"][0]["max_vms"]


def assert_quota_refusals(responses, caller_of) -> None:
    for index, response in enumerate(responses):
        if response.status_code == 200:
            continue
        body = response.json()
        assert response.status_code == 403, body
        assert set(body) == ERROR_KEYS | {"quota"}
        assert body["message"] == (
            f"quota: user {caller_of(index)} holds {LIMIT} of {LIMIT} VMs (rule role agent)"
        )
        assert body["quota"] == {
            "scope": "role",
            "name": AGENT,
            "pool": None,
            "key": "max_vms",
            "limit": LIMIT,
            "used": LIMIT,
        }


def test_two_hundred_assigns_of_one_caller_give_exactly_three(server, tokens, engine):
    token = tokens[USERS[0]]
    responses = rush(server, [token])
    assert Counter(response.status_code for response in responses) == {200: 3, 403: 197}
    assert_quota_refusals(responses, lambda index: USERS[0])
    # Several processes decided at once, not one worker in series.
    assert len(server.worker_pids("/api/v1/vm/action/assign", CLIENTS)) > 1
    assert held(engine) == {USERS[0]: LIMIT}
    with engine.connect() as conn:
        outcomes = Counter(
            conn.scalars(select(AuditEntry.outcome).where(AuditEntry.action == "assign"))
        )
    assert outcomes == {"ok": 3, "quota": 197}
    with requests.Session() as session:
        assert me(server, session, token) == {
            "limit": LIMIT,
            "used": LIMIT,
            "left": 0,
            "rule": {"scope": "role", "name": AGENT, "pool": None},
        }


def test_two_hundred_assigns_of_ten_callers_give_exactly_thirty(server, tokens, engine):
    callers = [tokens[name] for name in USERS]
    responses = rush(server, callers)
    assert Counter(response.status_code for response in responses) == {200: 30, 403: 170}
    assert_quota_refusals(responses, lambda index: USERS[index % len(USERS)])
    assert held(engine) == dict.fromkeys(USERS, LIMIT)


def test_an_override_binds_every_worker_at_once_and_its_removal_restores_the_role(
    server, tokens, engine
):
    name = USERS[0]
    token = tokens[name]
    boss = {"X-Auth-Token": tokens["boss"]}
    with requests.Session() as session:
        override = session.put(
            f"{server.base}/quotas/user/{name}", json={"max_vms": 5}, headers=boss, timeout=30
        )
        assert override.status_code == 200, override.text
        # Every worker reads it at its next request: 5 of 200, however they are spread.
        responses = rush(server, [token])
        assert Counter(response.status_code for response in responses) == {200: 5, 403: 195}
        assert len(server.worker_pids("/api/v1/vm/action/assign", CLIENTS)) > 1
        assert held(engine) == {name: 5}
        assert me(server, session, token)["limit"] == 5

        removed = session.delete(f"{server.base}/quotas/user/{name}", headers=boss, timeout=30)
        assert removed.status_code == 200, removed.text
        assert me(server, session, token) == {
            "limit": LIMIT,
            "used": 5,
            "left": 0,
            "rule": {"scope": "role", "name": AGENT, "pool": None},
        }
        # Three again: released to two, one more is given and no other.
        for node in vm_ids(engine, name)[:3]:
            released = session.put(
                f"{server.base}/vm/action/release/default",
                json={"node": node},
                headers={"X-Auth-Token": token},
                timeout=30,
            )
            assert released.status_code == 200, released.text
        responses = rush(server, [token])
        assert Counter(response.status_code for response in responses) == {200: 1, 403: 199}
        assert held(engine) == {name: LIMIT}


def vm_ids(engine, holder: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                select(Assignment.id_vm).where(
                    Assignment.assigned_by == holder, Assignment.status == ASSIGNED
                )
            )
        )
