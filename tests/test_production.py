"""Faults in the production setting: README's commands, gunicorn with 4 workers, PostgreSQL.

Each test starts the service exactly as README.md's "## Production" says (tests/production.py)
and checks what a client sees when a cloud refuses or hangs, when the database goes away
and comes back, and when a worker is killed in the middle of concurrent assigns.
"""

import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy
from conftest import DUMMY_FARM, POSTGRESQL_URL, ec2_cloud, postgresql_schema
from production import (
    ADMIN,
    ADMIN_PASSWORD,
    BIN,
    WORKERS,
    ProductionServer,
    TcpProxy,
    redis_answers,
    start_production,
)
from sqlalchemy import select

from dispatcher.models import ASSIGNED, Assignment, AuditEntry
from harness.gunicorn_server import race

pytestmark = pytest.mark.slow

LISTING = "/vm/status/fake_driver"  # the ledger: a listing read from the database
ENVELOPE_KEYS = {"status", "status_code", "status_short_message", "status_long_message", "message"}


def worker_timeout(cloud_timeout: int) -> int:
    """gunicorn's worker timeout as README's "## Production" states it."""
    return 4 * cloud_timeout + 10


@pytest.fixture
def production(tmp_path, postgresql_url):
    """Start the README's production setting with a CLOUD_FARM and CLOUD_TIMEOUT of the test.

    ``database_url`` defaults to the test's fresh schema; the server is stopped, and its
    log printed (pytest shows it for a failed test), even when the test fails.
    """
    started = []

    def start(farm: dict, cloud_timeout: int = 2, database_url: str | None = None):
        url = database_url or postgresql_url
        started.append(start_production(tmp_path, url, farm, cloud_timeout))
        return started[-1]

    yield start
    for server in started:
        server.stop()
        # pytest shows a teardown's output only when the test failed: the server's log then.
        print(server.output())


@pytest.fixture(scope="module")
def dummy_production(tmp_path_factory, postgresql_engine):
    """One production setting on the Dummy clouds for the module's tests that leave it as
    they found it: they count from what it answered before, or look at their own requests."""
    with postgresql_schema(postgresql_engine) as url:
        server = start_production(tmp_path_factory.mktemp("production"), url, DUMMY_FARM)
        yield server
        server.stop()
        print(server.output())


@pytest.fixture
def engine(postgresql_url):
    """An engine of the test's own on its schema, to read what the workers wrote."""
    engine = sqlalchemy.create_engine(postgresql_url)
    yield engine
    engine.dispose()


def assert_envelope(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert body["status"] == "error"
    assert body["status_code"] == status
    assert body["status_short_message"]
    assert body["status_long_message"]
    assert body["message"] == message


def timed_get(server: ProductionServer, path: str) -> tuple[requests.Response, float]:
    began = time.monotonic()
    response = server.get(path)
    return response, time.monotonic() - began


def test_cloud_refusing_connections_is_502_at_once(production, refusing_port):
    """A cloud nobody listens for: 502 naming the cloud and the refusal, long before the timeout."""
    cloud_timeout = 10
    server = production(
        {**DUMMY_FARM, "ec2": ec2_cloud(refusing_port)}, cloud_timeout=cloud_timeout
    )

    response, elapsed = timed_get(server, "/nodes/ec2")

    assert_envelope(response, 502, "ec2: Connection refused")
    assert response.json()["status_short_message"] == "Bad Gateway"
    assert "loopback-secret-never-shown" not in response.text
    assert elapsed < cloud_timeout


def test_hanging_cloud_is_504_within_the_timeout_and_the_worker_lives(production, hanging_port):
    """A cloud that never answers: 504 after CLOUD_TIMEOUT, well before gunicorn kills anyone."""
    cloud_timeout = 2
    server = production({**DUMMY_FARM, "ec2": ec2_cloud(hanging_port)}, cloud_timeout=cloud_timeout)
    workers = server.workers()
    since = server.mark()

    response, elapsed = timed_get(server, "/nodes/ec2")

    assert_envelope(response, 504, f"ec2: no answer within {cloud_timeout} seconds")
    assert response.json()["status_short_message"] == "Gateway Timeout"
    assert cloud_timeout <= elapsed < worker_timeout(cloud_timeout)
    time.sleep(0.2)  # the access line follows the answer
    [(pid, _, _, status)] = [line for line in server.access(since) if line[2].endswith("/ec2")]
    assert status == 504
    # The worker that waited is alive and serves the next requests; no worker was replaced.
    assert pid in server.serve_on_every_worker("/nodes/default")
    assert server.workers() == workers
    assert "WORKER TIMEOUT" not in server.output()


def test_database_outage_is_503_and_recovers_without_restart(production, postgresql_url):
    """PostgreSQL gone: 503 "Database unavailable"; back: 200 on every worker, same gunicorn."""
    upstream = sqlalchemy.make_url(POSTGRESQL_URL)
    proxy = TcpProxy((upstream.host or "127.0.0.1", upstream.port or 5432)).start()
    try:
        through_proxy = sqlalchemy.make_url(postgresql_url).set(port=proxy.port)
        server = production(
            DUMMY_FARM, database_url=through_proxy.render_as_string(hide_password=False)
        )
        master, workers = server.process.pid, server.workers()
        assert proxy.connections > 0  # the workers hold pooled connections through it
        server.serve_on_every_worker(LISTING)

        proxy.stop()
        down = server.mark()
        # What the workers answer while the database is away, collected first and checked
        # last: whatever they answer, the recovery below is checked too.
        outage = []
        deadline = time.monotonic() + 30
        while len({pid for pid, _, _, _ in server.access(down)}) < WORKERS:
            assert time.monotonic() < deadline, f"not every worker answered:\n{server.output()}"
            outage += race(WORKERS, lambda index, session: server.get(LISTING, session))
            time.sleep(0.1)  # the access lines follow the answers
        root = requests.get(f"{server.base}/", timeout=30)
        login = requests.post(
            f"{server.base}/auth", json={"username": ADMIN, "password": ADMIN_PASSWORD}, timeout=30
        )

        proxy.start()
        pids = server.serve_on_every_worker(LISTING)
        assert len(pids) == WORKERS
        assert server.workers() == workers
        assert server.process.poll() is None and server.process.pid == master

        assert (root.status_code, root.json()) == (200, {"status": "ok"})
        assert_envelope(login, 503, "Database unavailable: try again later")
        wrong = [response for response in outage if response.status_code != 503]
        assert not wrong, (
            f"{len(wrong)} of {len(outage)} answers during the outage were not 503: "
            f"{dict(Counter(r.status_code for r in wrong))}, the first: {wrong[0].text}"
        )
        for response in outage:
            assert_envelope(response, 503, "Database unavailable: try again later")
    finally:
        proxy.stop()


HOLDER = re.compile(r"^node (\d+) is assigned to (\S+) \(app\)$")


def test_worker_killed_during_concurrent_assigns_leaves_the_ledger_whole(production, engine):
    """SIGKILL a worker amid concurrent assigns: one holder per VM, an audit row per assign."""
    # USER = 21: the Dummy driver makes nodes 0 to 20, and libcloud's Node turns the id 0
    # into None ("None" in the API): the test assigns nodes 1 to 20.
    vms = [str(index) for index in range(1, 21)]
    server = production(
        {"default": {"ENGINE": "dummy"}, "fake_driver": {"ENGINE": "dummy", "USER": 21}}
    )
    before = server.workers()
    assert len(before) == WORKERS
    requests_ = [(vm, f"user-{vm}-{k}") for k in range(4) for vm in vms]
    answered = []  # (vm, user, status or "cut", body)
    lock = threading.Lock()
    started_enough = threading.Event()

    def assign(item):
        vm, user = item
        try:
            response = requests.put(
                f"{server.base}/vm/action/assign/fake_driver",
                json={"node": vm, "user": user, "vm_type": "app"},
                headers={"X-Auth-Token": server.token},
                timeout=60,
            )
            outcome = (vm, user, response.status_code, response.json())
        except requests.ConnectionError:
            outcome = (vm, user, "cut", None)
        with lock:
            answered.append(outcome)
            if len(answered) >= 10:
                started_enough.set()

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(assign, item) for item in requests_]
        assert started_enough.wait(60)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        for future in futures:
            future.result()

    statuses = Counter(status for _, _, status, _ in answered)
    print(f"answers: {dict(statuses)}; killed worker {victim}")
    assert set(statuses) <= {200, 409, "cut"}, [a for a in answered if a[2] not in (200, 409)]

    # The worker is gone and the master replaced it: four workers answer again.
    deadline = time.monotonic() + 30
    while victim in server.workers() or len(server.workers()) < WORKERS:
        assert time.monotonic() < deadline, f"workers now: {server.workers()}"
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{victim}")
    assert len(server.workers() - before) == 1  # its replacement
    assert victim not in server.serve_on_every_worker("/nodes/default")

    with engine.connect() as conn:
        rows = conn.execute(
            select(Assignment.id_vm, Assignment.status, Assignment.user).where(
                Assignment.cloud == "fake_driver"
            )
        ).all()
        audit = conn.execute(
            select(AuditEntry.id_vm, AuditEntry.user, AuditEntry.outcome).where(
                AuditEntry.cloud == "fake_driver", AuditEntry.action == "assign"
            )
        ).all()
    holding = defaultdict(list)
    for id_vm, status, user in rows:
        if status == ASSIGNED:
            holding[id_vm].append(user)
    holders = dict(holding)
    granted = Counter((id_vm, user) for id_vm, user, outcome in audit if outcome == "ok")
    granted_per_vm = Counter(id_vm for id_vm, _ in granted.elements())
    refused = Counter((id_vm, user) for id_vm, user, outcome in audit if outcome == "409")

    # One holder per VM; as many holders as granted assigns, each granted once.
    assert all(len(users) == 1 for users in holders.values()), holders
    assert sum(len(users) for users in holders.values()) == sum(granted.values())
    assert all(count == 1 for count in granted_per_vm.values()), granted_per_vm
    assert set(granted) == {(vm, users[0]) for vm, users in holders.items()}
    for vm, user, status, body in answered:
        if status == 200:
            assert body["result"] == f"Node {vm} assigned"
            assert granted[(vm, user)] == 1, (vm, user)
            assert holders.get(vm) == [user]
        elif status == 409:
            # Refused ones are recorded too, and name the VM's one holder.
            assert refused[(vm, user)] == 1, (vm, user)
            assert holders.get(vm) == [HOLDER.match(body["message"])[2]], body
        else:
            # A cut connection: applied whole (audit and ledger) or not at all.
            applied = granted[(vm, user)] == 1
            print(f"cut: {user} on VM {vm}, {'applied' if applied else 'not applied'}")
            assert applied == (holders.get(vm) == [user]), (vm, user)


def metric(server: ProductionServer, name: str, **labels) -> float:
    """One sample of GET /metrics (no token), summed over every worker; 0 if never counted."""
    answer = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in answer.text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == f"{name}{{{wanted}}}":
            return float(value)
    return 0.0


def test_metrics_add_up_what_every_worker_counted(dummy_production):
    """/metrics, whichever worker answers it, counts the requests and cloud calls of all four."""
    server = dummy_production
    listing = {"endpoint": "api_v1.listing", "method": "GET", "status": "200"}
    calls = {"cloud": "fake_driver", "method": "list_nodes"}
    before = metric(server, "dispatcher_http_requests_total", **listing)
    calls_before = metric(server, "dispatcher_cloud_call_duration_seconds_count", **calls)
    since = server.mark()

    answers = race(40, lambda index, session: server.get("/nodes/fake_driver", session))

    assert {answer.status_code for answer in answers} == {200}
    time.sleep(0.2)  # a worker logs its access line after answering
    served_by = {pid for pid, _, path, _ in server.access(since) if path.endswith("fake_driver")}
    assert len(served_by) > 1
    for _ in range(WORKERS):  # each of several /metrics answers, from any worker, agrees
        assert metric(server, "dispatcher_http_requests_total", **listing) == before + 40
        assert (
            metric(server, "dispatcher_cloud_call_duration_seconds_count", **calls)
            == calls_before + 40
        )


def test_request_log_line_has_the_request_id_and_no_token(dummy_production):
    """Under gunicorn: one request line with the client's X-Request-ID, the caller, no token."""
    server = dummy_production

    answer = requests.get(
        f"{server.base}/nodes/fake_driver",
        params={"auth_token": server.token},
        headers={"X-Request-ID": "production-log-check-1"},
        timeout=30,
    )

    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "production-log-check-1"
    time.sleep(0.2)
    output = server.output()
    lines = [line for line in output.splitlines() if "production-log-check-1" in line]
    request_lines = [line for line in lines if "dispatcher.requests" in line]
    assert len(request_lines) == 1, output
    assert (
        "[production-log-check-1] caller=admin method=GET endpoint=api_v1.listing"
        " path=/api/v1/nodes/fake_driver status=200" in request_lines[0]
    )
    # gunicorn's access line carries the same id, without the query string.
    assert any('"GET /api/v1/nodes/fake_driver HTTP/1.1" 200' in line for line in lines)
    assert server.token not in output
    assert ADMIN_PASSWORD not in output


@pytest.mark.skipif(not redis_answers(), reason="no Redis server at 127.0.0.1:6379")
def test_failed_logins_are_counted_across_workers_in_redis(dummy_production):
    """Five failed logins spread over the workers, then a 429 from whichever worker answers."""
    server = dummy_production
    username = f"intruder-{os.getpid()}-{time.monotonic_ns()}"
    since = server.mark()

    def attempt(password: str) -> requests.Response:
        # A connection of its own each time: gunicorn hands it to any worker.
        with requests.Session() as session:
            return session.post(
                f"{server.base}/auth",
                json={"username": username, "password": password},
                timeout=30,
            )

    # At once, so that several workers take them; each is counted after its answer.
    failed = race(5, lambda index, session: attempt("not the password"))
    throttled = [attempt("not the password") for _ in range(3)]

    assert [answer.status_code for answer in failed] == [403] * 5
    assert {answer.status_code for answer in throttled} == {429}
    assert throttled[0].json()["message"] == "Too many failed logins: try again later"
    assert int(throttled[0].headers["Retry-After"]) > 0
    time.sleep(0.2)
    served_by = {pid for pid, method, path, _ in server.access(since) if path == "/api/v1/auth"}
    assert len(served_by) > 1  # the count was shared, not one worker's own


def test_health_and_listing_pages_under_gunicorn(dummy_production):
    """The health check (plain and deep) and a listing walked page by page, on the workers."""
    server = dummy_production

    plain = requests.get(f"{server.base}/health", timeout=30)
    deep = server.get("/health?deep=1")
    first = server.get("/nodes/fake_driver?limit=1")
    second = server.get(f"/nodes/fake_driver?limit=1&marker={first.json()['next_marker']}")

    assert plain.status_code == 200 and plain.json() == {"status": "ok", "database": "ok"}
    assert requests.get(f"{server.base}/health?deep=1", timeout=30).status_code == 401
    assert deep.status_code == 200
    assert [(c["name"], c["reachable"]) for c in deep.json()["clouds"]] == [
        ("default", True),
        ("fake_driver", True),
    ]
    assert [n["name"] for n in first.json()["nodes"]] == ["dummy-1"]
    assert [n["name"] for n in second.json()["nodes"]] == ["dummy-2"]
    assert second.json()["next_marker"] is None


def test_a_shell_without_the_env_file_is_refused_with_one_line(dummy_production):
    """The README followed in several shells logs in (the fixture's login); a process
    started with secrets of its own, as from a shell that did not read the env file,
    refuses to start: the CLI and gunicorn alike, with one line naming the variable.
    Refused before they write anything, they leave the shared server as they found it."""
    server = dummy_production
    assert server.get("/test/start").status_code == 501  # PUT only: the token was accepted
    other = {
        **os.environ,
        "DISPATCHER_CONFIG": "production",
        "DATABASE_URL": server.database_url,
        "DISPATCHER_SECRET_KEY": "a-secret-key-of-another-shell",
        "DISPATCHER_PASSWORD_SALT": "a-salt-of-another-shell",
        "DISPATCHER_INSTANCE_PATH": str(server.folder / "other"),
    }
    refusal = "differs from the one this database was set up with"
    listed = subprocess.run(
        [str(BIN / "dispatcher"), "users", "list"], env=other, capture_output=True, text=True
    )
    assert listed.returncode == 1
    [line] = listed.stderr.splitlines()
    assert "DISPATCHER_SECRET_KEY" in line and refusal in line
    assert "a-secret-key-of-another-shell" not in line
    started = subprocess.run(
        [str(BIN / "gunicorn"), "-c", "python:dispatcher.gunicorn_config", "dispatcher.wsgi:app"],
        env={
            **other,
            "DISPATCHER_BIND": "127.0.0.1:0",
            "PROMETHEUS_MULTIPROC_DIR": str(server.folder / "m2"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1
    assert f"dispatcher: DISPATCHER_SECRET_KEY (SECRET_KEY) {refusal}" in started.stderr
    assert "Traceback" not in started.stderr
