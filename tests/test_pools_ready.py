"""A warm pool's ready checks on libcloud's Dummy cloud, whose VM N has the address
127.0.0.N: listeners opened on the addresses of some VMs and not of others. Only the VMs
that answer become free, and a free VM that stops answering leaves the pool and is
replaced, never while someone holds it."""

import datetime
import http.server
import selectors
import socket
import threading
import time

import pytest
import sqlalchemy
import time_machine
from conftest import SQLITE_ONLY, metric, token_client

from dispatcher import create_app, pools
from dispatcher.config import DUMMY_FARM
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db
from dispatcher.models import ASSIGNED, BOOTING, DELETED, FREE, Assignment, AuditEntry
from dispatcher.worker import pool_pass
from harness.ports import free_port

ASSIGN = "/api/v1/vm/action/assign"
RELEASE = "/api/v1/vm/action/release/default"
START = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
def database_url(any_database_url):
    return any_database_url


class Listeners:
    """TCP listeners on 127.0.0.N:port, opened and closed by the test; one thread accepts
    and drops every connection, so that the checks never fill a backlog."""

    def __init__(self, port: int):
        self.port = port
        self.sockets: dict[int, socket.socket] = {}
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def open(self, number: int) -> None:
        with self.lock:
            if number in self.sockets:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((f"127.0.0.{number}", self.port))
            listener.listen(64)
            listener.setblocking(False)
            self.sockets[number] = listener
            self.selector.register(listener, selectors.EVENT_READ)

    def close(self, number: int) -> None:
        with self.lock:
            listener = self.sockets.pop(number, None)
            if listener is not None:
                self.selector.unregister(listener)
                listener.close()

    def answers(self, address: str) -> bool:
        try:
            with socket.create_connection((address, self.port), timeout=2):
                return True
        except OSError:
            return False

    def _accept(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                ready = self.selector.select(timeout=0) if self.sockets else []
                for key, _ in ready:
                    try:
                        connection, _ = key.fileobj.accept()
                        connection.close()
                    except OSError:
                        pass
            self.stopped.wait(0.01)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        for number in list(self.sockets):
            self.close(number)
        self.selector.close()


@pytest.fixture
def listeners():
    opened = Listeners(free_port())
    yield opened
    opened.stop()


def pool(port: int, **changes) -> dict:
    return {
        "web": {
            "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
            "min_ready": 10,
            "max_total": 12,
            "release": "reuse",
            "boot_timeout": 86400,
            "ready_check": {"tcp": port, "timeout": 2},
            **changes,
        }
    }


def run_pass(app):
    with app.app_context():
        return pool_pass.run(pools.every())[0]


def rows(app) -> dict[str, int]:
    """The pool's VMs not deleted: id -> status."""
    with app.app_context():
        found = db.session.execute(
            sqlalchemy.select(Assignment.id_vm, Assignment.status).where(
                Assignment.pool == "web", Assignment.status != DELETED
            )
        )
        return dict(found.all())


def checks_failed(app) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                sqlalchemy.select(AuditEntry.message)
                .where(AuditEntry.action == "check")
                .order_by(AuditEntry.id)
            )
        )


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ({"tcp": 70000}, "POOLS['web']: ready_check: tcp must be a port from 1 to 65535"),
        (
            {"tcp": 22, "http": "http://{address}/"},
            "POOLS['web']: ready_check takes one of tcp (a port) and http (a URL)",
        ),
        (
            {"http": "{address}:80"},
            "POOLS['web']: ready_check: http must be an http:// or https:// URL",
        ),
        (
            {"http": "http://{host}/"},
            "POOLS['web']: ready_check: http may hold {address} and no other {...}",
        ),
        (
            {"tcp": 22, "address": "elastic"},
            "POOLS['web']: ready_check: address must be one of public, private",
        ),
        (
            {"tcp": 22, "timeout": 0},
            "POOLS['web']: ready_check: timeout must be a number of seconds above 0, at most 60",
        ),
        (
            {"tcp": 22, "retries": 2},
            "POOLS['web']: ready_check: unknown key 'retries' (known: address, http, tcp, timeout)",
        ),
    ],
)
def test_a_bad_ready_check_stops_the_start_naming_the_pool_and_key(check, message):
    with pytest.raises(ConfigurationError) as raised:
        create_app({"CLOUD_FARM": DUMMY_FARM, "POOLS": pool(22, ready_check=check)})
    assert str(raised.value) == message


def test_recheck_needs_a_ready_check():
    settings = pool(22, recheck_seconds=60)
    del settings["web"]["ready_check"]
    with pytest.raises(ConfigurationError) as raised:
        create_app({"CLOUD_FARM": DUMMY_FARM, "POOLS": settings})
    assert str(raised.value) == "POOLS['web']: recheck_seconds needs a ready_check"


@SQLITE_ONLY
def test_only_the_vms_that_answer_become_free_and_only_they_are_handed_out(make_app, listeners):
    """A tenth of the VMs never open their port: they stay booting. Over 50 assigns by
    type (each released back to the pool), a pass every 5, every VM handed out answers at
    that moment. (The pool hands out its first free VM, VM 3, at every turn: 500 turns
    with a pass every 50 made the same ten passes and repeated each check ten times.)"""
    app = make_app(POOLS=pool(listeners.port))
    passed = metric("dispatcher_pool_checks_total", pool="web", result="passed")
    failed = metric("dispatcher_pool_checks_total", pool="web", result="failed")
    report = run_pass(app)  # made: the Dummy's VMs 3 to 12
    assert report.created == 10
    silent = {id_vm for id_vm in rows(app) if int(id_vm) % 10 == 0}
    assert silent == {"10"}
    for id_vm in rows(app):
        if id_vm not in silent:
            listeners.open(int(id_vm))

    report = run_pass(app)
    assert report.promoted == 9
    assert report.failed_checks == 1
    assert {id_vm for id_vm, status in rows(app).items() if status == BOOTING} == {"10"}
    shown = token_client(app).get("/api/v1/pools/web").get_json()["pool"]
    assert (shown["free"], shown["booting"], shown["unready"]) == (9, 1, 1)
    assert checks_failed(app) == [
        f"Node 10 failed its ready check (TCP port {listeners.port}): TCP port "
        f"{listeners.port} of 127.0.0.10: Connection refused"
    ]
    assert metric("dispatcher_pool_checks_total", pool="web", result="passed") == passed + 9
    assert metric("dispatcher_pool_checks_total", pool="web", result="failed") == failed + 1

    client = token_client(app)
    handed_out = set()
    for turn in range(50):
        answer = client.put(ASSIGN, json={"user": "u", "vm_type": "web"})
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert listeners.answers(body["public_ips"][0]), body
        handed_out.add(body["id_vm"])
        assert client.put(RELEASE, json={"node": body["id_vm"]}).status_code == 200
        if turn % 5 == 0:
            run_pass(app)
    assert not handed_out & silent
    assert rows(app)["10"] == BOOTING


def test_a_vm_that_answers_late_is_free_from_the_pass_after(make_app, listeners):
    app = make_app(POOLS=pool(listeners.port, min_ready=2, max_total=2))
    run_pass(app)
    assert run_pass(app).failed_checks == 2
    assert set(rows(app).values()) == {BOOTING}
    for id_vm in rows(app):
        listeners.open(int(id_vm))
    assert run_pass(app).promoted == 2
    assert set(rows(app).values()) == {FREE}


def test_a_vm_that_never_answers_is_retired_after_its_boot_timeout(make_app, listeners):
    app = make_app(POOLS=pool(listeners.port, min_ready=1, max_total=1, boot_timeout=60))
    with time_machine.travel(START, tick=False) as clock:
        run_pass(app)
        assert run_pass(app).failed_checks == 1
        clock.move_to(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=120))
        report = run_pass(app)
    with app.app_context():
        destroyed = db.session.scalars(
            sqlalchemy.select(AuditEntry.message).where(AuditEntry.action == "destroy")
        ).all()
    assert report.destroyed == 1
    assert destroyed == ["Node 3 not answering its ready check 60 s after its creation: destroyed"]


def test_a_free_vm_that_stops_answering_leaves_the_pool_and_is_replaced(make_app, listeners):
    """recheck_seconds 300, two failures in a row: out within 600 s and a pass, destroyed,
    and a new VM made; an assigned VM that stops answering is left to its holder."""
    app = make_app(POOLS=pool(listeners.port, min_ready=3, max_total=3, recheck_seconds=300))
    replaced = metric("dispatcher_pool_replacements_total", pool="web", reason="check")
    with time_machine.travel(START, tick=False) as clock:
        run_pass(app)
        for id_vm in rows(app):
            listeners.open(int(id_vm))
        run_pass(app)
        assert set(rows(app).values()) == {FREE}
        client = token_client(app)
        held = client.put(ASSIGN, json={"user": "u", "vm_type": "web"}).get_json()["id_vm"]
        # The Dummy gives the next VM the id of the newest one destroyed: the last.
        quiet = max(rows(app), key=int)
        assert quiet != held
        listeners.close(int(quiet))
        listeners.close(int(held))

        clock.shift(datetime.timedelta(seconds=299))
        assert run_pass(app).failed_checks == 0  # not due yet
        clock.shift(datetime.timedelta(seconds=1))
        assert run_pass(app).failed_checks == 1
        assert rows(app)[quiet] == FREE  # one failure: still in the pool
        clock.shift(datetime.timedelta(seconds=300))
        report = run_pass(app)
        assert report.failed_checks == 1
        assert report.destroyed == 1
        assert rows(app)[held] == ASSIGNED
        assert metric("dispatcher_pool_replacements_total", pool="web", reason="check") == (
            replaced + 1
        )
        # The replacement took the same id (the Dummy's way); it answers once it listens.
        assert report.created == 1
        listeners.open(int(quiet))
        run_pass(app)
        assert rows(app)[quiet] == FREE
        assert sorted(rows(app).values()) == [FREE, FREE, ASSIGNED]
    messages = checks_failed(app)
    assert messages[-1].endswith("Connection refused; 2 in a row, out of the pool")
    with app.app_context():
        statuses = db.session.scalars(
            sqlalchemy.select(AuditEntry.message).where(AuditEntry.action == "destroy")
        ).all()
    assert statuses == [f"Node {quiet} failed its ready check 2 times in a row: destroyed"]


class Health(http.server.BaseHTTPRequestHandler):
    """Answers GET /healthz with the status the server was given."""

    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.send_response(self.server.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_http_check_wants_a_2xx_from_the_vms_address(make_app):
    port = free_port()
    servers = {}
    for number, status in ((3, 200), (4, 503)):
        server = http.server.ThreadingHTTPServer((f"127.0.0.{number}", port), Health)
        server.status = status
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[number] = server
    try:
        check = {"http": f"http://{{address}}:{port}/healthz", "timeout": 2}
        app = make_app(POOLS=pool(port, min_ready=2, max_total=2, ready_check=check))
        run_pass(app)
        report = run_pass(app)
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
    assert report.promoted == 1
    assert rows(app) == {"3": FREE, "4": BOOTING}
    assert checks_failed(app) == [
        f"Node 4 failed its ready check (GET http://{{address}}:{port}/healthz): "
        f"GET http://127.0.0.4:{port}/healthz answered 503"
    ]


# -- renewals ----------------------------------------------------------------------------


def plain_pool(**changes) -> dict:
    """A pool without a ready check: three VMs, no more, reused after release."""
    entry = {
        "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
        "min_ready": 3,
        "max_total": 3,
        "release": "reuse",
        "boot_timeout": 86400,
        **changes,
    }
    return {"web": entry}


def free_ids(app) -> set[str]:
    return {id_vm for id_vm, status in rows(app).items() if status == FREE}


def destroyed(app) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                sqlalchemy.select(AuditEntry.message)
                .where(AuditEntry.action == "destroy")
                .order_by(AuditEntry.id)
            )
        )


def test_free_vms_older_than_max_age_are_replaced_never_below_min_ready(make_app):
    app = make_app(POOLS=plain_pool(max_age=3600))
    renewed = metric("dispatcher_pool_replacements_total", pool="web", reason="max_age")
    with time_machine.travel(START, tick=False) as clock:
        run_pass(app)
        run_pass(app)
        old = free_ids(app)
        assert len(old) == 3
        clock.shift(datetime.timedelta(seconds=3600))
        run_pass(app)
        assert free_ids(app) == old  # not older than max_age yet
        clock.shift(datetime.timedelta(seconds=1))
        seen = []
        for _ in range(3):
            run_pass(app)
            seen.append(len(free_ids(app)))
        assert min(seen) >= 3  # sampled at every pass: never below min_ready
        assert not free_ids(app) & old
        assert len(free_ids(app)) == 3
    assert metric("dispatcher_pool_replacements_total", pool="web", reason="max_age") == (
        renewed + 3
    )
    assert destroyed(app) == [
        f"Node {id_vm} free for more than the pool's max_age (3600 s), replaced: destroyed"
        for id_vm in sorted(old, key=int)
    ]


def test_a_changed_template_rolls_the_free_vms_and_ends_the_assigned_ones_on_release(make_app):
    """The entry's image changes (as a restart with new POOLS would read it): the free VMs
    of the old template are replaced, never fewer than min_ready free; an assign meanwhile
    gets a current VM; an assigned VM of the old template is destroyed on its release,
    under reuse too."""
    app = make_app(POOLS=plain_pool(max_total=4))
    run_pass(app)
    run_pass(app)
    client = token_client(app)
    held = client.put(ASSIGN, json={"user": "u", "vm_type": "web"}).get_json()["id_vm"]
    run_pass(app)  # the one taken is made again
    run_pass(app)
    old = free_ids(app) | {held}
    assert len(old) == 4
    with app.app_context():
        changed = plain_pool(max_total=4, clouds=[{"cloud": "default", "image": "2", "size": "1"}])
        app.extensions[pools.EXTENSION] = pools.spec.parse_pools(
            changed, app.config["CLOUD_FARM"], "local", True
        )
    shown = client.get("/api/v1/pools/web").get_json()["pool"]
    assert (shown["free"], shown["assigned"], shown["current"], shown["outdated"]) == (3, 1, 0, 4)
    renewed = metric("dispatcher_pool_replacements_total", pool="web", reason="template")

    run_pass(app)  # three replacements made, the old ones still free
    assert len(free_ids(app)) == 3
    run_pass(app)  # the new ones free: the old ones retired
    current = free_ids(app) - old
    assert len(current) >= 1
    taken = client.put(ASSIGN, json={"user": "u", "vm_type": "web"}).get_json()["id_vm"]
    assert taken not in old  # a current VM first
    for _ in range(3):
        run_pass(app)
        assert len(free_ids(app)) >= 3 - 1  # the one just taken aside, never fewer
    assert not free_ids(app) & old
    assert metric("dispatcher_pool_replacements_total", pool="web", reason="template") == (
        renewed + 3
    )
    released = client.put(RELEASE, json={"node": held})
    assert released.get_json()["result"] == f"Node {held} released and deleted"
    assert held not in rows(app)
    shown = client.get("/api/v1/pools/web").get_json()["pool"]
    assert (shown["current"], shown["outdated"]) == (shown["free"] + shown["assigned"], 0)


@SQLITE_ONLY  # the checks' timeouts, not the database
def test_silent_vms_delay_a_pass_by_one_timeout_not_one_each(make_app):
    """Six VMs that accept a connection and never answer it, with a timeout of 2 s: their
    checks run at once, so the pass waits about 2 s, not 12 (the bound is loose: the
    machine is shared)."""
    port = free_port()
    silent = []
    for number in range(3, 9):
        listener = socket.socket()
        listener.bind((f"127.0.0.{number}", port))
        listener.listen(8)  # accepted by the kernel, never answered
        silent.append(listener)
    try:
        check = {"http": f"http://{{address}}:{port}/", "timeout": 2}
        app = make_app(POOLS=pool(port, min_ready=6, max_total=6, ready_check=check))
        run_pass(app)
        started = time.monotonic()
        report = run_pass(app)
        took = time.monotonic() - started
    finally:
        for listener in silent:
            listener.close()
    assert report.failed_checks == 6
    assert took < 8, took
    assert checks_failed(app)[0].endswith(f"GET http://127.0.0.3:{port}/ did not answer within 2 s")
