"""Exactly one winner: concurrent assigns and releases of one VM through gunicorn workers."""

import os
from collections import Counter

import pytest
import requests
import sqlalchemy
from conftest import app_of_server, settings_file
from helpers import PASSWORD_SALT, SECRET_KEY, Gunicorn
from sqlalchemy import select

from dispatcher import auth
from dispatcher.extensions import db
from dispatcher.models import AGENT, ASSIGNED, FREE, Assignment, AuditEntry
from harness.gunicorn_server import race

pytestmark = pytest.mark.slow

CLOUD = "fake_driver"  # the cloud of Gunicorn.put
VM = "1"  # dummy-1: every worker's own Dummy driver has it


@pytest.fixture
def agent_token(any_database_url):
    """Schema, roles and a user with role agent in the test's database; that user's token."""
    app = app_of_server(any_database_url)
    with app.app_context():
        token = auth.create_user("racer", "racer-password", roles=(AGENT,)).get_auth_token()
    # Once the context has ended, its session has given its connection back: all closed.
    with app.app_context():
        db.engine.dispose()
    return token


@pytest.fixture
def engine(any_database_url):
    """An engine of its own on the test's database, to read what the workers wrote."""
    engine = sqlalchemy.create_engine(any_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def gunicorn(tmp_path, any_database_url, agent_token):
    """Start gunicorn on the test's database, with ``settings`` (after the cheap password
    hash) in a DISPATCHER_SETTINGS file."""
    started = []

    def start(**settings) -> Gunicorn:
        settings_path = settings_file(tmp_path / "settings.py", **settings)
        env = {
            **os.environ,
            "DATABASE_URL": any_database_url,
            "DISPATCHER_SECRET_KEY": SECRET_KEY,
            "DISPATCHER_PASSWORD_SALT": PASSWORD_SALT,
            "DISPATCHER_SETTINGS": str(settings_path),
            "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance"),
        }
        started.append(Gunicorn(tmp_path, env))
        started[-1].warm_up(agent_token)
        return started[-1]

    yield start
    for server in started:
        server.stop()
        # pytest shows a teardown's output only when the test failed: the server's log then.
        print(server.output())


def ledger(engine) -> list[tuple]:
    """(status, user) of every ledger row of the VM."""
    with engine.connect() as conn:
        return conn.execute(
            select(Assignment.status, Assignment.user).where(
                Assignment.cloud == CLOUD, Assignment.id_vm == VM
            )
        ).all()


def audit(engine, action: str) -> Counter:
    """How many audit entries of ``action`` on the VM ended with each outcome."""
    with engine.connect() as conn:
        outcomes = conn.scalars(
            select(AuditEntry.outcome).where(
                AuditEntry.cloud == CLOUD, AuditEntry.action == action, AuditEntry.id_vm == VM
            )
        )
        return Counter(outcomes)


def assign_race(server: Gunicorn, token: str, users: list[str]) -> str:
    """One concurrent assign of the VM per user; checks one 200 and the rest 409; the winner."""
    responses = race(
        len(users),
        lambda index, session: server.put(
            session, "assign", token, node=VM, user=users[index], vm_type="app"
        ),
    )
    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [200] + [409] * (len(users) - 1), [r.text for r in responses]
    winner = users[statuses.index(200)]
    answer = responses[statuses.index(200)].json()
    assert answer["status"] == "ok"
    assert (answer["id_vm"], answer["result"]) == (VM, f"Node {VM} assigned")
    for response in responses:
        if response.status_code == 409:
            body = response.json()
            assert body["status"] == "error"
            assert body["message"] == f"node {VM} is assigned to {winner} (app)"
    return winner


def test_one_of_twenty_concurrent_assigns_wins(gunicorn, agent_token, engine):
    """Twenty clients assigning one VM through four workers: one 200, nineteen 409, one holder."""
    server = gunicorn()
    users = [f"user-{index:02d}" for index in range(20)]

    winner = assign_race(server, agent_token, users)

    assert ledger(engine) == [(ASSIGNED, winner)]
    assert audit(engine, "assign") == {"ok": 1, "409": 19}
    with engine.connect() as conn:
        granted = conn.scalars(
            select(AuditEntry.user).where(
                AuditEntry.cloud == CLOUD,
                AuditEntry.id_vm == VM,
                AuditEntry.action == "assign",
                AuditEntry.outcome == "ok",
            )
        ).all()
    assert granted == [winner]
    assert len(server.worker_pids(f"/api/v1/vm/action/assign/{CLOUD}", len(users))) > 1


def test_concurrent_releases_free_once_then_one_reassign_wins(gunicorn, agent_token, engine):
    """Ten concurrent releases: one 200, nine 409 "node 1 is free"; then ten assigns: one wins."""
    # Release keeps the VM: a Dummy node destroyed in one worker would live on in the others.
    server = gunicorn(RELEASE_KEEPS_NODE=True)
    with requests.Session() as session:
        first = server.put(session, "assign", agent_token, node=VM, user="first", vm_type="app")
    assert first.status_code == 200, first.text

    responses = race(
        10, lambda index, session: server.put(session, "release", agent_token, node=VM)
    )

    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [200] + [409] * 9, [r.text for r in responses]
    assert responses[statuses.index(200)].json()["result"] == f"Node {VM} released"
    assert {r.json()["message"] for r in responses if r.status_code == 409} == {
        f"node {VM} is free"
    }
    assert ledger(engine) == [(FREE, None)]
    assert audit(engine, "release") == {"ok": 1, "409": 9}

    winner = assign_race(server, agent_token, [f"again-{index}" for index in range(10)])

    assert ledger(engine) == [(ASSIGNED, winner)]
    assert audit(engine, "assign") == {"ok": 2, "409": 9}
