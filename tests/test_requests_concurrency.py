"""Requests for VMs made at once through gunicorn with four workers on PostgreSQL, the
worker serving the line meanwhile: every request is served whole or not at all, at every
moment (sampled), no VM goes to two requests, and cancels give back every VM set aside."""

import os
import random
import threading
from collections import Counter

import pytest
import sqlalchemy
from conftest import app_of_server, settings_file
from helpers import PASSWORD_SALT, SECRET_KEY, Gunicorn
from sqlalchemy import select

from dispatcher import auth, pools
from dispatcher.extensions import db
from dispatcher.models import AGENT, ASSIGNED, RESERVED, Assignment, VMRequest
from dispatcher.worker import pool_pass, request_serving
from harness.gunicorn_server import race

pytestmark = pytest.mark.slow

CLIENTS = 60
POOLS = {
    name: {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": size,
        "max_total": size,
        # The Dummy cloud's nodes live in this process: gunicorn's workers never call it
        # for a request (the ledger hands VMs over), and a cancel keeps them in the pool.
        "release": "reuse",
    }
    for name, size in (("web", 12), ("db", 6))
}


@pytest.fixture
def site(tmp_path, postgresql_url):
    """The schema with both pools filled, an agent's token, gunicorn on it, and an app of
    this process (the worker's)."""
    app = app_of_server(postgresql_url, POOLS=POOLS)
    with app.app_context():
        for _ in range(2):
            pool_pass.run(pools.every())
        token = auth.create_user("asker", "asker-password", roles=(AGENT,)).get_auth_token()
    environment = {
        **os.environ,
        "DATABASE_URL": postgresql_url,
        "DISPATCHER_SECRET_KEY": SECRET_KEY,
        "DISPATCHER_PASSWORD_SALT": PASSWORD_SALT,
        "DISPATCHER_SETTINGS": str(settings_file(tmp_path / "settings.py", POOLS=POOLS)),
        "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    server = Gunicorn(tmp_path, environment)
    engine = sqlalchemy.create_engine(postgresql_url)
    try:
        server.warm_up(token, path="/api/v1/requests")
        yield app, server, token, engine
    finally:
        server.stop()
        engine.dispose()
        with app.app_context():
            db.engine.dispose()


def books(engine) -> tuple[dict, dict]:
    """Each request's asked VMs and state, and each request's VMs by (state, pool)."""
    with engine.connect() as conn:
        asked = {
            row.id: (row.vms, row.state)
            for row in conn.execute(select(VMRequest.id, VMRequest.vms, VMRequest.state))
        }
        held: dict[int, Counter] = {}
        rows = conn.execute(
            select(Assignment.request_id, Assignment.status, Assignment.pool).where(
                Assignment.request_id.is_not(None)
            )
        )
        for request_id, status, pool in rows:
            held.setdefault(request_id, Counter())[(status, pool)] += 1
    return asked, held


def whole_or_nothing(engine) -> None:
    """No request holds VMs assigned unless it is ready with every one it asked for."""
    asked, held = books(engine)
    for request_id, counts in held.items():
        assigned = {pool: n for (status, pool), n in counts.items() if status == ASSIGNED}
        vms, state = asked[request_id]
        if assigned:
            assert state in ("ready", "cancelled"), (request_id, state, counts)
            if state == "ready":
                assert assigned == vms, (request_id, vms, counts)
        if state != "pending":
            assert not any(status == RESERVED for status, _ in counts), (request_id, counts)


def test_concurrent_requests_are_served_whole_and_cancels_free_every_vm(site):
    app, server, token, engine = site
    draws = random.Random(7)
    bodies = []
    for index in range(CLIENTS):
        vms = {"web": draws.randint(1, 2)}
        if draws.random() < 0.5:
            vms["db"] = 1
        bodies.append({"vms": vms, "user": f"user-{index}", "priority": draws.randint(1, 3)})

    stop = threading.Event()
    problems: list[BaseException] = []

    def serve_and_sample() -> None:
        with app.app_context():
            while not stop.is_set():
                try:
                    request_serving.run()
                    whole_or_nothing(engine)
                except BaseException as exc:  # noqa: BLE001 (reported below)
                    problems.append(exc)
                    return

    worker = threading.Thread(target=serve_and_sample)
    worker.start()
    try:
        answers = race(
            CLIENTS,
            lambda index, session: session.post(
                f"{server.base}/requests",
                json=bodies[index],
                headers={"X-Auth-Token": token},
                timeout=60,
            ),
        )
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not problems, problems
    assert sorted({answer.status_code for answer in answers}) <= [200, 202], [
        answer.text for answer in answers if answer.status_code not in (200, 202)
    ]
    with app.app_context():
        request_serving.run()
    whole_or_nothing(engine)

    asked, held = books(engine)
    ready = [rid for rid, (_, state) in asked.items() if state == "ready"]
    assert ready, "no request was served"
    in_use = Counter()
    for request_id in ready:
        for (_status, pool), number in held[request_id].items():
            in_use[pool] += number
    assert in_use["web"] <= 12 and in_use["db"] <= 6
    assert len(asked) == CLIENTS

    # Every pending request cancelled at once: nothing set aside is left behind.
    pending = [rid for rid, (_, state) in asked.items() if state == "pending"]
    cancels = race(
        len(pending) or 1,
        lambda index, session: (
            session.delete(
                f"{server.base}/requests/{pending[index]}",
                headers={"X-Auth-Token": token},
                timeout=60,
            )
            if pending
            else None
        ),
    )
    if pending:
        assert [answer.status_code for answer in cancels] == [200] * len(pending)
    asked, held = books(engine)
    assert all(state in ("ready", "cancelled") for _, state in asked.values())
    assert not any(status == RESERVED for counts in held.values() for status, _ in counts)
    whole_or_nothing(engine)
