"""The cache of verified tokens in one process: what it keeps, for how long, and how a
change made elsewhere (another process's app on the same database, a command) empties it
at once, on PostgreSQL (NOTIFY) and on SQLite (data_version). Under gunicorn:
test_revocation_production.py."""

import time

import pytest
import time_machine
from conftest import assert_error, metric, served, token_client

from dispatcher import auth, create_app
from dispatcher.auth import token_check
from dispatcher.auth.token_cache import Caller, VerifiedTokens
from dispatcher.config import DUMMY_FARM
from dispatcher.errors import ConfigurationError

LISTING = "/api/v1/nodes/fake_driver"
CHANGE = "/api/v1/vm/action/assign/fake_driver"  # role agent; an empty body is a 400 then


def from_cache() -> float:
    return metric("dispatcher_token_checks_total", source="cache")


def from_database() -> float:
    return metric("dispatcher_token_checks_total", source="database")


def kept(client, path=LISTING, status=200, method="get"):
    """Send ``path`` twice, each answered ``status``: the first time the token is checked
    against the database, the second it is answered from the cache, each counted exactly
    once. A test of what empties the cache begins here, so that it cannot pass with the
    cache off."""
    checks = from_database(), from_cache()
    assert getattr(client, method)(path, json={} if method == "put" else None).status_code == status
    assert (from_database(), from_cache()) == (checks[0] + 1, checks[1])
    assert getattr(client, method)(path, json={} if method == "put" else None).status_code == status
    assert (from_database(), from_cache()) == (checks[0] + 1, checks[1] + 1)


@pytest.fixture
def pair(make_app, any_database_url):
    """Two apps on one database, as two processes would be: ``serving`` keeps tokens,
    ``other`` changes users; a client of ``serving`` with an agent's token."""
    serving = served(make_app(), single_process=True)
    other = make_app()
    client = token_client(serving, "kept", roles=("agent",))
    yield serving, other, client
    serving.extensions[token_check.EXTENSION].guard.stop()


def wait_for(client, path, status, seconds=1.0, method="get"):
    """The answer to ``path`` once it is ``status``; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        answer = getattr(client, method)(path, json={} if method == "put" else None)
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.01)


def test_a_token_is_verified_once_then_kept(pair):
    _, _, client = pair
    assert client.get(LISTING).status_code == 200
    before = from_cache()

    answers = [client.get(LISTING).status_code for _ in range(3)]

    assert (answers, from_cache() - before) == ([200, 200, 200], 3)


def test_a_revocation_elsewhere_empties_the_cache_at_once(pair):
    serving, other, client = pair
    kept(client)
    with other.app_context():
        auth.revoke_tokens(auth.get_user("kept"))

    assert_error(wait_for(client, LISTING, 401), 401, auth.UNAUTHENTICATED)


def test_a_role_removed_elsewhere_is_403_at_once(pair):
    serving, other, client = pair
    kept(client, CHANGE, 400, method="put")
    result = other.test_cli_runner().invoke(args=["users", "remove-role", "kept", "agent"])
    assert result.exit_code == 0, result.output

    refused = wait_for(client, CHANGE, 403, method="put")

    assert_error(refused, 403, "Forbidden: this needs the role agent or admin")
    assert client.get(LISTING).status_code == 200


def test_a_user_deactivated_elsewhere_is_refused_at_once(pair):
    serving, other, client = pair
    kept(client)
    result = other.test_cli_runner().invoke(args=["users", "deactivate", "kept"])
    assert result.exit_code == 0, result.output

    assert wait_for(client, LISTING, 401).status_code == 401


def test_a_token_is_never_kept_past_its_own_end(make_app, sqlite_url):
    app = served(make_app(SECURITY_TOKEN_MAX_AGE=1))
    # The wall clock stands still from the token's issue to its second use, or a busy
    # machine could take its one second of life before the cache is asked to keep it.
    with time_machine.travel(time.time(), tick=False):
        client = token_client(app)
        kept(client)
    # itsdangerous counts whole seconds: a token of MAX_AGE 1 is refused from 2 s after it
    # was issued; the cache would keep it for TOKEN_CACHE_SECONDS (300), and counts its
    # time on the monotonic clock, which only sleeping moves.
    time.sleep(2.1)
    try:
        assert client.get(LISTING).status_code == 401
    finally:
        app.extensions[token_check.EXTENSION].guard.stop()


def test_without_a_serving_command_every_token_is_checked(app):
    client = token_client(app)
    before = from_cache()
    assert [client.get(LISTING).status_code for _ in range(3)] == [200, 200, 200]
    assert from_cache() == before


def test_gunicorn_on_sqlite_keeps_no_token(make_app):
    app = make_app()
    auth.serve(app)  # several processes: no single one may keep tokens
    assert app.extensions[token_check.EXTENSION].guard is None


def caller(user_id: int) -> Caller:
    return Caller(user_id, f"user{user_id}", f"u{user_id}", frozenset({"agent"}))


def test_the_cache_is_bounded_and_forgets_by_user():
    cache = VerifiedTokens(size=2, seconds=60)
    for number in (1, 2, 3):
        assert cache.put(f"t{number}", caller(number), 60, cache.epoch())
    assert (cache.get("t1"), len(cache)) == (None, 2)  # the least recently used went
    cache.forget_user(2)
    assert (cache.get("t2"), cache.get("t3")) == (None, caller(3))


def test_a_verification_that_overlaps_a_revocation_is_not_kept():
    cache = VerifiedTokens(size=10, seconds=60)
    epoch = cache.epoch()  # the database read begins
    cache.forget_user(7)  # a revocation is heard meanwhile
    assert not cache.put("t", caller(7), 60, epoch)
    assert cache.get("t") is None


def test_an_entry_ends_with_the_shorter_of_its_ages():
    cache = VerifiedTokens(size=10, seconds=60)
    cache.put("t", caller(1), 0.05, cache.epoch())
    time.sleep(0.06)
    assert cache.get("t") is None


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("TOKEN_CACHE_SIZE", 0, "TOKEN_CACHE_SIZE must be a whole number from 1"),
        ("TOKEN_CACHE_SIZE", True, "TOKEN_CACHE_SIZE must be a whole number from 1"),
        ("TOKEN_CACHE_SECONDS", -1, "TOKEN_CACHE_SECONDS must be a number of seconds from 0"),
    ],
)
def test_settings_out_of_range_stop_the_start(setting, value, message):
    with pytest.raises(ConfigurationError, match=f"^{message}"):
        create_app({"TESTING": True, "CLOUD_FARM": DUMMY_FARM, setting: value})
