"""Tokens kept by every worker, and revoked in all of them at once: README's production
setting (gunicorn, 4 workers, PostgreSQL), a token served from each worker's cache, then
ended through one worker or from the command line, and a worker whose listener lost its
connection."""

import re
import time

import pytest
import requests
import sqlalchemy
from conftest import DUMMY_FARM, postgresql_schema
from production import WORKERS, ProductionServer, start_production

from harness.gunicorn_server import race

pytestmark = pytest.mark.slow

PASSWORD = "revocation-test-password"
LISTING = "/nodes/fake_driver"
# An agent's change: the role is checked before the body, which is refused (400).
CHANGE = "/vm/action/assign/fake_driver"
CACHED = re.compile(r'^dispatcher_token_cache_entries\{pid="(\d+)"\} (\S+)$', re.MULTILINE)
FROM_CACHE = re.compile(r'^dispatcher_token_checks_total\{source="cache"\} (\S+)$', re.MULTILINE)
# How soon every worker must refuse a token that was revoked.
AT_ONCE = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, postgresql_engine):
    with postgresql_schema(postgresql_engine) as url:
        started = start_production(tmp_path_factory.mktemp("revocation"), url, DUMMY_FARM)
        started.url = url
        yield started
        started.stop()
        print(started.output())


def new_user(server: ProductionServer, name: str, *roles: str) -> str:
    """A user made with `dispatcher users create`, and a token of theirs."""
    options = " ".join(f"--role {role}" for role in roles)
    server.run_command(f"dispatcher users create {name} {options} --password={PASSWORD}")
    return server.login(name, PASSWORD)


def send(server: ProductionServer, token: str, path: str, session) -> requests.Response:
    headers = {"X-Auth-Token": token}
    if path == CHANGE:
        return session.put(f"{server.base}{path}", json={}, headers=headers, timeout=30)
    return session.get(f"{server.base}{path}", headers=headers, timeout=30)


def scrape(server: ProductionServer) -> tuple[dict[int, float], float]:
    """From /metrics: the tokens each worker keeps (pid -> the per-worker gauge), and the
    token checks answered from a cache, summed over the workers."""
    text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=30).text
    kept = {int(pid): float(count) for pid, count in CACHED.findall(text)}
    from_cache = FROM_CACHE.search(text)
    return kept, float(from_cache[1]) if from_cache else 0.0


def cached_by_every_worker(server: ProductionServer, token: str, path: str, status: int) -> None:
    """Requests with ``token`` until each worker answered one with ``status`` and keeps one
    token more than before (the per-worker gauge of /metrics): ``token``. Then rounds of two
    requests per worker until one round is answered from a cache throughout (the checks
    from a cache, counted exactly): a test of what empties the caches begins here, so that
    it cannot pass with them off. A worker whose listener missed its heartbeat on a loaded
    machine checks against the database for that while, as it should: hence the rounds."""
    before, _ = scrape(server)
    deadline = time.monotonic() + 30
    since = server.mark()
    while True:
        answers = race(2 * WORKERS, lambda index, session: send(server, token, path, session))
        assert {answer.status_code for answer in answers} == {status}
        time.sleep(0.1)  # a worker logs its access line after answering
        served = {pid for pid, _, logged, _ in server.access(since) if logged.endswith(path)}
        kept, from_cache = scrape(server)
        keeping = {pid for pid, count in kept.items() if count >= before.get(pid, 0) + 1}
        if served >= server.workers() and keeping >= server.workers():
            break
        assert time.monotonic() < deadline, (served, kept, before, server.workers())
    while True:
        answers = race(2 * WORKERS, lambda index, session: send(server, token, path, session))
        assert {answer.status_code for answer in answers} == {status}
        _, now_from_cache = scrape(server)
        if now_from_cache == from_cache + 2 * WORKERS:
            return
        assert time.monotonic() < deadline, (now_from_cache, from_cache)
        from_cache = now_from_cache


def refused_by_every_worker(
    server: ProductionServer, token: str, path: str, status: int, since_change: float
) -> float:
    """Requests with ``token`` until every worker answered ``status``; none may have
    answered otherwise later than AT_ONCE after the change. The seconds it took."""
    since = server.mark()
    deadline = time.monotonic() + 30
    while True:
        sent = time.monotonic()
        answers = race(2 * WORKERS, lambda index, session: send(server, token, path, session))
        late = [a.status_code for a in answers if a.status_code != status]
        assert not late or sent - since_change < AT_ONCE, late
        time.sleep(0.1)
        logged = server.access(since)
        refusing = {
            pid for pid, _, served, code in logged if served.endswith(path) and code == status
        }
        if refusing >= server.workers():
            return time.monotonic() - since_change
        assert time.monotonic() < deadline, (refusing, server.workers())


def test_a_token_revoked_through_one_worker_is_refused_by_all(server):
    token = new_user(server, "revoked-by-api", "agent")
    cached_by_every_worker(server, token, LISTING, 200)

    revoked = requests.delete(f"{server.base}/auth", headers={"X-Auth-Token": token}, timeout=30)
    changed = time.monotonic()

    assert revoked.json()["result"] == "tokens revoked"
    refused_by_every_worker(server, token, LISTING, 401, changed)


def test_a_user_deactivated_on_the_command_line_is_refused_by_all(server):
    token = new_user(server, "deactivated", "agent")
    cached_by_every_worker(server, token, LISTING, 200)

    server.run_command("dispatcher users deactivate deactivated")
    changed = time.monotonic()

    refused_by_every_worker(server, token, LISTING, 401, changed)


def test_a_role_removed_on_the_command_line_is_403_on_every_worker(server):
    token = new_user(server, "demoted", "agent")
    cached_by_every_worker(server, token, CHANGE, 400)

    server.run_command("dispatcher users remove-role demoted agent")
    changed = time.monotonic()

    refused_by_every_worker(server, token, CHANGE, 403, changed)
    assert send(server, token, LISTING, requests).status_code == 200  # still a valid token


def test_a_worker_whose_listener_was_cut_checks_every_token(server):
    token = new_user(server, "cut-off", "agent")
    cached_by_every_worker(server, token, LISTING, 200)
    # Autocommit: within a transaction, pg_stat_activity would show one snapshot forever.
    engine = sqlalchemy.create_engine(server.url, isolation_level="AUTOCOMMIT")
    names = [f"dispatcher-tokens:{pid}" for pid in server.workers()]
    find = sqlalchemy.text("SELECT pid FROM pg_stat_activity WHERE application_name = ANY(:names)")
    try:
        with engine.connect() as connection:
            listeners = connection.execute(find, {"names": names}).scalars().all()
            assert len(listeners) == WORKERS
            cut = sqlalchemy.text("SELECT pg_terminate_backend(:pid)")
            connection.execute(cut, {"pid": listeners[0]})
            while listeners[0] in connection.execute(find, {"names": names}).scalars().all():
                time.sleep(0.005)
            # Used while the listener is away: checked against the database, never kept.
            answers = race(
                2 * WORKERS, lambda index, session: send(server, token, LISTING, session)
            )
            assert {answer.status_code for answer in answers} == {200}

            revoked = requests.delete(
                f"{server.base}/auth", headers={"X-Auth-Token": token}, timeout=30
            )
            changed = time.monotonic()
            assert revoked.status_code == 200
            # No grace at all: the worker cut off refuses at once, and so do the others.
            refused_by_every_worker(server, token, LISTING, 401, changed - AT_ONCE)
    finally:
        engine.dispose()
