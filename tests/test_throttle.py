"""The login throttle: failed logins per client address and username, then 429."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from conftest import assert_error
from helpers import REDIS_URL, RETURNING_REDIS_URL
from production import TcpProxy

from dispatcher import auth
from dispatcher.auth import throttle

PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"
THROTTLED = "Too many failed logins: try again later"


@pytest.fixture
def app(make_app):
    """An app with the users alice and bob (role agent); the throttle counts in memory."""
    return with_users(make_app())


def with_users(app):
    with app.app_context():
        for name in ("alice", "bob"):
            auth.create_user(name, PASSWORD, roles=("agent",))
    return app


def login(client, username="alice", password=PASSWORD):
    return client.post("/api/v1/auth", json={"username": username, "password": password})


def assert_forbidden(response):
    """The original's 403 envelope for a refused login."""
    assert_error(response, 403, "Forbidden")


def assert_throttled(response):
    """The 429 envelope, with a Retry-After of at most the minute, and no token."""
    body = assert_error(response, 429, THROTTLED)
    assert body["status_short_message"] == "Too Many Requests"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def fail_five_times(client, username="alice"):
    for _ in range(5):
        assert_forbidden(login(client, username, WRONG))


def test_sixth_attempt_is_429_even_with_the_right_password(anonymous):
    """Five refused logins are 403 "Forbidden"; the sixth is a 429 with Retry-After, whatever
    the password."""
    fail_five_times(anonymous)
    assert_throttled(login(anonymous))
    assert_throttled(login(anonymous, password=WRONG))
    assert_throttled(login(anonymous))


def test_unknown_username_is_throttled_too(anonymous):
    """Guessing at a username that does not exist is counted the same way."""
    fail_five_times(anonymous, "mallory")
    assert_throttled(login(anonymous, "mallory", WRONG))


def test_another_username_from_the_same_client_is_not_throttled(anonymous):
    """alice throttled: bob, from the same address, logs in, and his failures are 403s."""
    fail_five_times(anonymous)
    assert_throttled(login(anonymous))
    assert login(anonymous, "bob").status_code == 200
    assert_forbidden(login(anonymous, "bob", WRONG))


def test_same_username_from_another_address_is_not_throttled(app, anonymous):
    """alice throttled at 192.0.2.1: from 192.0.2.2 her right password still gets a token."""
    anonymous.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    fail_five_times(anonymous)
    assert_throttled(login(anonymous))
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.2"
    response = login(elsewhere)
    assert response.status_code == 200
    assert response.json["token"]
    assert_throttled(login(anonymous))


def test_a_forged_forwarded_for_does_not_escape_the_throttle(anonymous):
    """With no trusted proxy, an X-Forwarded-For header the client sends changes nothing."""
    fail_five_times(anonymous)
    response = anonymous.post(
        "/api/v1/auth",
        json={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    assert_throttled(response)


def test_successful_logins_are_never_counted(anonymous):
    """Twenty logins with the right password in a row: twenty tokens."""
    statuses = [login(anonymous).status_code for _ in range(20)]
    assert statuses == [200] * 20


def test_a_success_neither_counts_nor_resets_the_failures(anonymous):
    """Four failures, a success, then the fifth failure is a 403 and the next attempt a 429."""
    for _ in range(4):
        assert_forbidden(login(anonymous, password=WRONG))
    assert login(anonymous).status_code == 200
    assert_forbidden(login(anonymous, password=WRONG))
    assert_throttled(login(anonymous))


def test_malformed_logins_are_not_counted(anonymous):
    """Bodies refused as 400 (no password, not JSON) are not failed logins."""
    for _ in range(6):
        assert login(anonymous, password="").status_code == 400
        response = anonymous.post("/api/v1/auth", data="{", content_type="application/json")
        assert response.status_code == 400
    assert login(anonymous).status_code == 200


def test_the_limit_comes_from_the_configuration(make_app):
    """LOGIN_FAILURE_LIMIT = "2 per minute": the third attempt is already a 429."""
    client = with_users(make_app(LOGIN_FAILURE_LIMIT="2 per minute")).test_client()
    assert_forbidden(login(client, password=WRONG))
    assert_forbidden(login(client, password=WRONG))
    assert_throttled(login(client))


def test_a_throttled_user_keeps_the_tokens_she_has(app, anonymous):
    """Only the login is throttled: a token alice got before still works."""
    token = login(anonymous).json["token"]
    fail_five_times(anonymous)
    assert_throttled(login(anonymous))
    response = anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": token})
    assert response.status_code == 200
    assert len(response.json["nodes"]) == 2


@pytest.fixture
def redis_db():
    """This worker's Redis database (helpers.REDIS_URL), emptied before and after; a skip
    where no server answers."""
    server = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        server.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {type(exc).__name__}")
    server.flushdb()
    yield server
    server.flushdb()
    server.close()


def test_throttle_counts_in_redis(make_app, redis_db):
    """With RATELIMIT_STORAGE_URI on Redis: the same 403s then 429, counted in Redis, and
    allowed again once Redis forgets the count."""
    app = with_users(make_app(RATELIMIT_STORAGE_URI=REDIS_URL))
    client = app.test_client()
    fail_five_times(client)
    assert_throttled(login(client))
    assert login(client, "bob").status_code == 200
    counts = {key.decode(): int(redis_db.get(key)) for key in redis_db.keys("*")}
    [(key, count)] = [(key, count) for key, count in counts.items() if count]
    assert "alice" in key and count == 5
    redis_db.flushdb()
    assert login(client).status_code == 200


def test_redis_storage_from_the_environment(make_app, redis_db, monkeypatch):
    """DISPATCHER_RATELIMIT_STORAGE_URI chooses the store: the counts land in Redis."""
    monkeypatch.setenv("DISPATCHER_RATELIMIT_STORAGE_URI", REDIS_URL)
    client = with_users(make_app()).test_client()
    assert_forbidden(login(client, password=WRONG))
    assert len(redis_db.keys("*")) == 1


def concurrent_guesses(app, count: int) -> list[int]:
    """``count`` logins of alice with a wrong password, all at once; their statuses."""
    barrier = threading.Barrier(count)

    def guess(_):
        client = app.test_client()
        barrier.wait(timeout=30)
        return login(client, password=WRONG).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return sorted(pool.map(guess, range(count)))


def test_concurrent_guesses_evaluate_at_most_the_limit(app):
    """30 wrong passwords at once: the throttle counts each before its password is
    checked, so exactly 5 are evaluated (403) and 25 refused unchecked (429)."""
    assert concurrent_guesses(app, 30) == [403] * 5 + [429] * 25
    assert_throttled(login(app.test_client()))


def test_concurrent_guesses_counted_in_redis_evaluate_at_most_the_limit(make_app, redis_db):
    app = with_users(make_app(RATELIMIT_STORAGE_URI=REDIS_URL))
    assert concurrent_guesses(app, 30) == [403] * 5 + [429] * 25


@pytest.fixture
def returning_redis():
    """The worker's returning Redis database behind a loopback proxy that the test closes
    (the port refuses, as a stopped Redis's does) and opens again on the same port: (the
    proxy, the URI through it, the server reached directly)."""
    server = redis.Redis.from_url(RETURNING_REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        server.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {RETURNING_REDIS_URL}: {type(exc).__name__}")
    proxy = TcpProxy(("127.0.0.1", 6379)).start()
    database = RETURNING_REDIS_URL.rsplit("/", 1)[1]
    yield proxy, f"redis://127.0.0.1:{proxy.port}/{database}", server
    proxy.stop()
    server.close()


class Clock:
    """The throttle's clock (``LoginThrottle.clock``), moved by the test, never slept on."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_processes(make_app, uri: str, username: str):
    """Two apps counting in ``uri``, as two workers would (a throttle and a memory each), on
    one clock; the user ``username``; a client of each."""
    first = make_app(RATELIMIT_STORAGE_URI=uri)
    with first.app_context():
        auth.create_user(username, PASSWORD, roles=("agent",))
    second = make_app(RATELIMIT_STORAGE_URI=uri)
    clock = Clock()
    for app in (first, second):
        app.extensions[throttle.EXTENSION].clock = clock
    return clock, first.test_client(), second.test_client()


def counted_in(server, username: str) -> int:
    """The user's refused logins as Redis holds them (0 for none)."""
    keys = server.keys(f"*{username}*")
    assert len(keys) <= 1, keys
    return int(server.get(keys[0])) if keys else 0


def test_the_throttle_counts_in_redis_again_once_it_is_back(make_app, returning_redis):
    """Redis stopped (a port that refuses) then back: a login throttle shared by two processes
    counts in Redis again within one attempt of its return."""
    proxy, uri, server = returning_redis
    username = f"alice-{uuid.uuid4().hex[:12]}"
    clock, one, two = two_processes(make_app, uri, username)
    try:
        assert_forbidden(login(one, username, WRONG))
        assert_forbidden(login(two, username, WRONG))
        assert counted_in(server, username) == 2  # shared

        proxy.stop()
        assert_forbidden(login(one, username, WRONG))  # each in its own memory meanwhile
        assert_forbidden(login(two, username, WRONG))
        assert counted_in(server, username) == 2

        proxy.start()
        clock.now += throttle.RETRY_SECONDS
        assert_forbidden(login(one, username, WRONG))
        assert counted_in(server, username) == 3  # the first attempt since its return
        assert_forbidden(login(two, username, WRONG))
        assert_forbidden(login(one, username, WRONG))
        assert counted_in(server, username) == 5
        # Each process counted only three itself: the sixth is refused by the shared count.
        assert_throttled(login(two, username))
        assert_throttled(login(one, username))
        assert counted_in(server, username) == 5
    finally:
        server.delete(*server.keys(f"*{username}*") or ["-"])


def test_redis_is_asked_again_only_after_the_back_off(make_app, returning_redis):
    """While Redis refuses, the throttle counts in memory and asks Redis again at most every
    RETRY_SECONDS (on the throttle's clock); it keeps counting in memory while Redis still
    refuses, and the limit holds there."""
    proxy, uri, server = returning_redis
    username = f"alice-{uuid.uuid4().hex[:12]}"
    clock, one, _ = two_processes(make_app, uri, username)
    try:
        proxy.stop()
        assert_forbidden(login(one, username, WRONG))
        clock.now += throttle.RETRY_SECONDS
        assert_forbidden(login(one, username, WRONG))  # Redis asked, still refusing
        proxy.start()
        clock.now += throttle.RETRY_SECONDS / 2
        assert_forbidden(login(one, username, WRONG))  # too soon to ask: memory
        assert counted_in(server, username) == 0
        clock.now += throttle.RETRY_SECONDS / 2
        assert_forbidden(login(one, username, WRONG))
        assert counted_in(server, username) == 1
    finally:
        server.delete(*server.keys(f"*{username}*") or ["-"])
