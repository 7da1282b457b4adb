"""A warm pool under a rush: 200 concurrent assigns by type for 50 free VMs, through four
gunicorn workers on PostgreSQL, the pool filled on moto's EC2 by the pool manager."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy
from conftest import ERROR_KEYS, app_of_server, settings_file
from helpers import PASSWORD_SALT, SECRET_KEY, Gunicorn
from sqlalchemy import select

from dispatcher import auth
from dispatcher.extensions import db
from dispatcher.models import AGENT, ASSIGNED, DELETED, Assignment, AuditEntry
from harness.gunicorn_server import race

pytestmark = pytest.mark.slow

DISPATCHER = Path(sys.executable).with_name("dispatcher")
POOL = "web"
READY = 50
CLIENTS = 200
# The Retry-After of a refusal: the manager's interval, the soonest the pool can refill.
INTERVAL = 15
ASSIGN = "/api/v1/vm/action/assign"
ANSWER_KEYS = {"status", "id_vm", "id", "result", "cloud", "hostname", "public_ips", "private_ips"}


@pytest.fixture
def environment(tmp_path, postgresql_url, cloud) -> dict:
    """The environment of the manager and the workers: the test's schema, shared secrets,
    a settings file whose cloud `default` is moto and whose pool keeps READY VMs there."""
    pools = {
        POOL: {
            "clouds": [{"cloud": "default", "image": cloud.default_image_id(), "size": "t2.micro"}],
            "min_ready": READY,
            "max_total": READY + 10,
        }
    }
    settings = settings_file(
        tmp_path / "settings.py",
        CLOUD_FARM={"default": cloud.farm_entry()},
        POOLS=pools,
        POOLS_INTERVAL=INTERVAL,
    )
    return {
        **os.environ,
        "DATABASE_URL": postgresql_url,
        "DISPATCHER_SECRET_KEY": SECRET_KEY,
        "DISPATCHER_PASSWORD_SALT": PASSWORD_SALT,
        "DISPATCHER_SETTINGS": str(settings),
        "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance"),
    }


@pytest.fixture
def agent_token(postgresql_url) -> str:
    """Schema, roles and a user with role agent in the test's schema; that user's token."""
    app = app_of_server(postgresql_url)
    with app.app_context():
        token = auth.create_user("racer", "racer-password", roles=(AGENT,)).get_auth_token()
    # Once the context has ended, its session has given its connection back: all closed.
    with app.app_context():
        db.engine.dispose()
    return token


@pytest.fixture
def engine(postgresql_url):
    """An engine of its own on the test's schema, to read what the workers wrote."""
    engine = sqlalchemy.create_engine(postgresql_url)
    yield engine
    engine.dispose()


@pytest.fixture
def manager(environment, agent_token):
    """`dispatcher worker pass --wait 120`, as an operator fills the pools before opening
    the doors: started on the test's schema, killed at the end if it still runs."""
    process = subprocess.Popen(
        [str(DISPATCHER), "worker", "pass", "--wait", "120"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture
def server(tmp_path, environment, agent_token, manager):
    """gunicorn with four workers on the test's schema, each worker warmed up.

    It starts while the manager fills the pool: the two starts are most of the test's
    time. The warm-up reads the ledger and calls no cloud.
    """
    started = Gunicorn(tmp_path, environment)
    try:
        started.warm_up(agent_token, path="/api/v1/pools")
        yield started
    finally:
        started.stop()
        # pytest shows a teardown's output only when the test failed: the server's log then.
        print(started.output())


def pool_rows(engine) -> list[tuple]:
    """(id_vm, status, user) of the pool's rows not deleted."""
    with engine.connect() as conn:
        return conn.execute(
            select(Assignment.id_vm, Assignment.status, Assignment.user).where(
                Assignment.pool == POOL, Assignment.status != DELETED
            )
        ).all()


def test_two_hundred_assigns_by_type_share_fifty_free_vms(
    manager, server, agent_token, engine, cloud
):
    """The pool manager makes exactly 50 VMs; of 200 concurrent assigns by type, 50 get one
    VM each and 150 are told to come back (503, Retry-After); no VM is given twice."""
    output = manager.communicate(timeout=180)[0]
    assert manager.returncode == 0, output
    assert cloud.count("RunInstances") == READY, output
    assert output.splitlines()[-1].endswith(f"{READY} free, 0 booting, 0 assigned"), output
    free = {id_vm for id_vm, _, _ in pool_rows(engine)}
    assert len(free) == READY

    cloud.clear()
    users = [f"user-{index:03d}" for index in range(CLIENTS)]
    responses = race(
        CLIENTS,
        lambda index, session: session.put(
            f"{server.base}/vm/action/assign",
            json={"vm_type": POOL, "user": users[index]},
            headers={"X-Auth-Token": agent_token},
            timeout=60,
        ),
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: READY, 503: CLIENTS - READY}, [r.text for r in responses][:5]
    given = {}  # user -> id_vm, as the clients saw it
    for user, response in zip(users, responses, strict=True):
        body = response.json()
        if response.status_code == 200:
            assert set(body) == ANSWER_KEYS
            assert body["status"] == "ok"
            assert body["cloud"] == "default"
            assert body["result"] == f"Node {body['id_vm']} assigned"
            assert body["hostname"].startswith(f"{POOL}-")
            assert body["public_ips"] and body["private_ips"]
            given[user] = body["id_vm"]
        else:
            assert set(body) == ERROR_KEYS
            assert (body["status"], body["status_code"]) == ("error", 503)
            assert body["message"] == f"pool {POOL} has no free VM now: 0 booting"
            assert response.headers["Retry-After"] == str(INTERVAL)
    assert len(set(given.values())) == READY
    assert set(given.values()) == free
    # Taking a VM from the pool is the ledger's business alone: no call reached the cloud.
    assert cloud.count() == 0
    # Several processes took VMs at once, not one worker in series.
    assert len(server.worker_pids(ASSIGN, CLIENTS)) > 1

    rows = pool_rows(engine)
    assert len(rows) == READY
    assert {status for _, status, _ in rows} == {ASSIGNED}
    assert {user: id_vm for id_vm, _, user in rows} == given
    with engine.connect() as conn:
        granted = conn.execute(
            select(AuditEntry.user, AuditEntry.id_vm).where(
                AuditEntry.action == "assign", AuditEntry.outcome == "ok"
            )
        ).all()
    assert len(granted) == READY
    assert dict(granted) == given
