"""Idempotency-Key on the requests that change something, on libcloud's Dummy cloud, SQLite
and PostgreSQL: a repeat gets the first answer without running again. (A client cut off
and concurrent repeats through gunicorn, on moto's EC2: test_idempotency_ec2.py.)"""

import datetime
import json

import pytest
import sqlalchemy
from conftest import assert_error, cloud_calls, token_client

from dispatcher import auth, idempotency
from dispatcher.clock import now as utcnow
from dispatcher.extensions import db
from dispatcher.models import ASSIGNED, FREE, Assignment, AuditEntry, IdempotencyKey, User

ASSIGN = "/api/v1/vm/action/assign/fake_driver"
RELEASE = "/api/v1/vm/action/release/fake_driver"
START = "/api/v1/vm/start/fake_driver"
BODY = {"node": "1", "user": "zeppolo", "vm_type": "app"}
DAY = datetime.timedelta(days=1)


@pytest.fixture
def database_url(any_database_url):
    """The keys' tests run on SQLite and, where a server answers, on PostgreSQL."""
    return any_database_url


def keyed(key: str) -> dict:
    return {"Idempotency-Key": key}


def keys(app) -> list[tuple]:
    """(username, key, status_code) of every stored key, in the order they were made."""
    with app.app_context():
        found = db.session.execute(
            sqlalchemy.select(User.username, IdempotencyKey.key, IdempotencyKey.status_code)
            .join(User, User.id == IdempotencyKey.user_id)
            .order_by(IdempotencyKey.id)
        )
        return [tuple(row) for row in found]


def ledger(app) -> list[tuple]:
    """(id_vm, status, user) of every ledger row."""
    with app.app_context():
        found = db.session.scalars(sqlalchemy.select(Assignment).order_by(Assignment.id))
        return [(row.id_vm, row.status, row.user) for row in found]


def audit(app) -> list[tuple]:
    """(action, id_vm, user, outcome) of every history entry."""
    with app.app_context():
        found = db.session.scalars(sqlalchemy.select(AuditEntry).order_by(AuditEntry.id))
        return [(entry.action, entry.id_vm, entry.user, entry.outcome) for entry in found]


def add_key(app, key: str, age: datetime.timedelta, **values):
    """A key row of the user ``tester`` for the assign of BODY, made ``age`` ago; ``values``
    set the rest (no answer yet, and an expiry a day after it was made, unless given)."""
    with app.app_context():
        now = utcnow()
        row = IdempotencyKey(
            user_id=auth.get_user("tester").id,
            key=key,
            fingerprint=idempotency.fingerprint("PUT", ASSIGN, json.dumps(BODY).encode()),
            created_at=now - age,
            **{"expires_at": now - age + DAY, **values},
        )
        db.session.add(row)
        db.session.commit()


@pytest.fixture
def statements(app):
    """The SQL statements the app sends while the test runs."""
    sent = []

    def record(conn, cursor, statement, *args):
        sent.append(statement)

    with app.app_context():
        engine = db.engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", record)
    yield sent
    sqlalchemy.event.remove(engine, "before_cursor_execute", record)


def test_a_repeat_gets_the_first_answer_and_assigns_once(app, client):
    """The repeat answers the same status and body, marked Idempotent-Replayed; the VM is
    assigned once, with one history entry, and the key is kept for IDEMPOTENCY_TTL."""
    first = client.put(ASSIGN, json=BODY, headers=keyed("assign-1"))
    again = client.put(ASSIGN, json=BODY, headers=keyed("assign-1"))

    assert first.status_code == again.status_code == 200
    assert first.json == {"status": "ok", "id_vm": "1", "id": 1, "result": "Node 1 assigned"}
    assert again.get_data() == first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.content_type == "application/json"
    assert ledger(app) == [("1", ASSIGNED, "zeppolo")]
    assert audit(app) == [("assign", "1", "zeppolo", "ok")]
    assert keys(app) == [("tester", "assign-1", 200)]
    with app.app_context():
        row = db.session.scalars(sqlalchemy.select(IdempotencyKey)).one()
        assert row.expires_at - row.created_at == datetime.timedelta(seconds=24 * 3600)
        assert json.loads(row.body) == first.json


def test_a_repeated_start_makes_no_second_vm_nor_cloud_call(app, client):
    """vm/start twice with one key: one create_node, the same node in both answers."""
    body = {"name": "w", "image": "1", "size": "1"}
    first = client.post(START, json=body, headers=keyed("start-1"))
    calls = cloud_calls("fake_driver", "create_node")

    again = client.post(START, json=body, headers=keyed("start-1"))

    assert first.status_code == again.status_code == 200
    assert again.json["nodes"]["id"] == first.json["nodes"]["id"] == "3"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert cloud_calls("fake_driver", "create_node") == calls
    listed = client.get("/api/v1/nodes/fake_driver").json["nodes"]
    assert [node["id"] for node in listed] == ["1", "2", "3"]
    assert ledger(app) == [("3", FREE, None)]


def test_a_replay_writes_nothing_but_reads_the_key(app, client, statements):
    """Replaying sends no INSERT, UPDATE or DELETE: only reads."""
    client.put(ASSIGN, json=BODY, headers=keyed("k"))
    statements.clear()

    again = client.put(ASSIGN, json=BODY, headers=keyed("k"))

    assert again.headers["Idempotent-Replayed"] == "true"
    assert any("idempotency_keys" in statement for statement in statements)
    verbs = {statement.split(None, 1)[0].upper() for statement in statements}
    assert verbs <= {"SELECT", "BEGIN", "COMMIT", "ROLLBACK"}, statements


def test_a_refused_request_is_kept_and_replayed_too(app, client):
    """A 4xx answer is the request's answer: the repeat gets it without running again, even
    once the VM is free again."""
    client.put(ASSIGN, json=BODY)
    refused = client.put(ASSIGN, json={**BODY, "user": "late"}, headers=keyed("late"))
    assert_error(refused, 409, "node 1 is assigned to zeppolo (app)")
    client.put(RELEASE, json={"node": "1"})  # now it could be assigned

    again = client.put(ASSIGN, json={**BODY, "user": "late"}, headers=keyed("late"))

    assert again.status_code == 409
    assert again.get_data() == refused.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [entry[3] for entry in audit(app) if entry[0] == "assign"] == ["ok", "409"]
    assert keys(app) == [("tester", "late", 409)]


def test_a_body_refused_by_validation_is_kept(app, client):
    """A 400 for the body is an answer like any other."""
    refused = client.put(ASSIGN, json={"node": "1"}, headers=keyed("bad-body"))
    assert refused.status_code == 400
    again = client.put(ASSIGN, json={"node": "1"}, headers=keyed("bad-body"))
    assert again.get_data() == refused.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"


def test_the_key_with_another_body_is_422_and_runs_nothing(app, client):
    client.put(ASSIGN, json=BODY, headers=keyed("k"))

    other = client.put(ASSIGN, json={**BODY, "node": "2"}, headers=keyed("k"))

    assert_error(
        other, 422, "Idempotency-Key was used with another request: a new request needs a new key"
    )
    assert "Idempotent-Replayed" not in other.headers
    assert ledger(app) == [("1", ASSIGNED, "zeppolo")]
    assert len(audit(app)) == 1


def test_the_key_on_another_path_is_422(app, client):
    """The same key and body on release: another request, refused; the VM stays assigned."""
    client.put(ASSIGN, json={"node": "1", "user": "u", "vm_type": "a"}, headers=keyed("k"))

    other = client.put(RELEASE, json={"node": "1", "user": "u", "vm_type": "a"}, headers=keyed("k"))

    assert other.status_code == 422
    assert ledger(app) == [("1", ASSIGNED, "u")]
    assert [entry[0] for entry in audit(app)] == ["assign"]


def test_the_same_json_written_otherwise_is_the_same_request(app, client):
    """Key order and spaces do not make another request: the fingerprint reads the JSON."""
    first = client.put(ASSIGN, data=json.dumps(BODY), headers=keyed("k"))
    reordered = json.dumps(dict(reversed(list(BODY.items()))), indent=2)
    again = client.put(
        ASSIGN, data=reordered, headers={**keyed("k"), "Content-Type": "application/json"}
    )
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()


def test_a_retry_with_a_fresh_token_in_the_body_replays(app, client, anonymous):
    """The token moves from the header to the body's auth_token, a new one: the same request."""
    first = client.put(ASSIGN, json=BODY, headers=keyed("k"))
    login = anonymous.post(
        "/api/v1/auth", json={"username": "tester", "password": "tester-password"}
    )
    fresh = login.json["token"]

    again = anonymous.put(ASSIGN, json={**BODY, "auth_token": fresh}, headers=keyed("k"))

    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    assert len(audit(app)) == 1


def test_keys_of_different_callers_never_meet(app):
    """Two users, one key: each request runs, and each repeat gets its own caller's answer."""
    alice, bob = token_client(app, "alice"), token_client(app, "bob")

    by_alice = alice.put(ASSIGN, json=BODY, headers=keyed("shared"))
    by_bob = bob.put(ASSIGN, json={**BODY, "node": "2"}, headers=keyed("shared"))
    bob_again = bob.put(ASSIGN, json={**BODY, "node": "2"}, headers=keyed("shared"))
    alice_other = alice.put(ASSIGN, json={**BODY, "node": "2"}, headers=keyed("shared"))

    assert (by_alice.json["id_vm"], by_bob.json["id_vm"]) == ("1", "2")
    assert "Idempotent-Replayed" not in by_bob.headers
    assert bob_again.get_data() == by_bob.get_data()
    assert bob_again.headers["Idempotent-Replayed"] == "true"
    assert alice_other.status_code == 422
    assert ledger(app) == [("1", ASSIGNED, "zeppolo"), ("2", ASSIGNED, "zeppolo")]
    with app.app_context():
        callers = db.session.scalars(sqlalchemy.select(AuditEntry.caller).order_by(AuditEntry.id))
        assert list(callers) == ["alice", "bob"]
    assert keys(app) == [("alice", "shared", 200), ("bob", "shared", 200)]


def test_quoted_and_bare_keys_are_one_key(app, client):
    """The structured-field string "abc" is the key abc; escapes are read."""
    client.put(ASSIGN, json=BODY, headers=keyed('"abc"'))
    again = client.put(ASSIGN, json=BODY, headers=keyed("abc"))
    assert again.headers["Idempotent-Replayed"] == "true"

    client.put(ASSIGN, json={**BODY, "node": "2"}, headers=keyed(r'"a\"b\\c"'))
    assert keys(app) == [("tester", "abc", 200), ("tester", 'a"b\\c', 200)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Idempotency-Key: empty"),
        ("   ", "Idempotency-Key: empty"),
        ('""', "Idempotency-Key: empty"),
        ("x" * 256, "Idempotency-Key: at most 255 characters"),
        ('"' + "x" * 256 + '"', "Idempotency-Key: at most 255 characters"),
        ("a\x01b", "Idempotency-Key: printable ASCII characters only"),
        ("a\x7fb", "Idempotency-Key: printable ASCII characters only"),
        ("a\tb", "Idempotency-Key: printable ASCII characters only"),
        ("clé", "Idempotency-Key: printable ASCII characters only"),
        # The UTF-8 bytes of "café", as a WSGI server hands them on (Latin-1).
        ("café".encode().decode("latin-1"), "Idempotency-Key: printable ASCII characters only"),
        ('"abc', "Idempotency-Key: a quoted key ends with a quote"),
        ('"a"b"', 'Idempotency-Key: a quote inside a quoted key needs \\"'),
        ('"a\\nb"', 'Idempotency-Key: only \\" and \\\\ are escapes'),
    ],
)
# The header is read before the database is asked: SQLite alone says as much.
@pytest.mark.parametrize("any_database_url", ["sqlite"], indirect=True)
def test_a_bad_key_is_400_naming_the_header_and_runs_nothing(app, client, value, message):
    response = client.put(ASSIGN, json=BODY, headers=keyed(value))

    assert_error(response, 400, message)
    assert ledger(app) == []
    assert keys(app) == []


@pytest.mark.parametrize(
    "value", ["x" * 255, '"' + "y" * 255 + '"', "a b", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"]
)
def test_keys_up_to_255_printable_characters_are_taken(app, client, value):
    response = client.put(ASSIGN, json=BODY, headers=keyed(value))
    assert response.status_code == 200, response.json
    assert len(keys(app)) == 1


def test_the_role_is_checked_before_the_key(app):
    """A reader with a key: 403, and no key is stored."""
    reader = token_client(app, "reader", roles=())
    response = reader.put(ASSIGN, json=BODY, headers=keyed("k"))
    assert response.status_code == 403
    assert keys(app) == []


@pytest.mark.parametrize(
    "expires",
    [DAY, -datetime.timedelta(seconds=1)],
    ids=["before-its-expiry", "past-its-expiry"],
)
def test_a_repeat_while_the_first_runs_is_409_with_retry_after(app, client, expires):
    """A request with the key still runs (its row has no answer yet, made a minute ago): 409
    with Retry-After, and nothing runs; past the key's expiry too, as it may still act."""
    now = utcnow()
    add_key(app, "k", age=datetime.timedelta(minutes=1), expires_at=now + expires)
    calls = cloud_calls("fake_driver", "list_nodes")

    response = client.put(ASSIGN, json=BODY, headers=keyed("k"))

    assert_error(
        response, 409, "the request with this Idempotency-Key is still running: try again later"
    )
    assert int(response.headers["Retry-After"]) >= 1
    assert "Idempotent-Replayed" not in response.headers
    assert ledger(app) == [] and audit(app) == []
    assert cloud_calls("fake_driver", "list_nodes") == calls
    assert keys(app) == [("tester", "k", None)]


def test_a_running_key_with_another_request_is_422_not_409(app, client):
    add_key(app, "k", age=datetime.timedelta(minutes=1))
    response = client.put(ASSIGN, json={**BODY, "node": "2"}, headers=keyed("k"))
    assert response.status_code == 422
    assert ledger(app) == []


def test_the_key_of_a_request_that_died_running_is_taken_over(app, client):
    """A row without an answer for longer than any request lives (its worker was killed):
    the retry runs, and its answer is kept."""
    with app.app_context():
        limit = idempotency.running_limit()
    assert limit >= datetime.timedelta(minutes=10)
    add_key(app, "k", age=limit + datetime.timedelta(seconds=5))

    response = client.put(ASSIGN, json=BODY, headers=keyed("k"))

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers
    assert ledger(app) == [("1", ASSIGNED, "zeppolo")]
    assert keys(app) == [("tester", "k", 200)]
    again = client.put(ASSIGN, json=BODY, headers=keyed("k"))
    assert again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("any_database_url", ["sqlite"], indirect=True)
def test_the_running_limit_outlasts_gunicorns_worker_timeout(make_app):
    """A slow cloud's requests may live 4 × CLOUD_TIMEOUT + 10 s under gunicorn: the limit
    grows with CLOUD_TIMEOUT beyond its ten minutes."""
    app = make_app(CLOUD_TIMEOUT=300)
    with app.app_context():
        assert idempotency.running_limit() == datetime.timedelta(seconds=2 * (4 * 300 + 10))


def test_an_expired_key_runs_again(make_app):
    """With IDEMPOTENCY_TTL = 0 each key expires at once: the repeat starts a second VM; and
    an expired key may name another request."""
    app = make_app(IDEMPOTENCY_TTL=0)
    client = token_client(app)
    body = {"name": "w", "image": "1", "size": "1"}

    first = client.post(START, json=body, headers=keyed("k"))
    again = client.post(START, json=body, headers=keyed("k"))
    other = client.put(ASSIGN, json=BODY, headers=keyed("k"))

    assert (first.json["nodes"]["id"], again.json["nodes"]["id"]) == ("3", "4")
    assert "Idempotent-Replayed" not in again.headers
    assert other.status_code == 200
    assert ledger(app) == [("3", FREE, None), ("4", FREE, None), ("1", ASSIGNED, "zeppolo")]
    assert keys(app) == [("tester", "k", 200)]


def test_an_answer_of_500_or_more_is_not_kept_and_the_retry_runs(make_app):
    """An empty warm pool answers 503: the key is given back, and the retry with it, once the
    pool has a VM, is assigned one."""
    pools = {
        "web": {
            "clouds": [{"cloud": "fake_driver", "image": "1", "size": "1"}],
            "min_ready": 1,
            "max_total": 1,
        }
    }
    app = make_app(POOLS=pools)
    client = token_client(app)
    body = {"vm_type": "web", "user": "alice"}

    empty = client.put(ASSIGN, json=body, headers=keyed("k"))

    assert empty.status_code == 503
    assert keys(app) == []
    with app.app_context():
        db.session.add(
            Assignment(cloud="fake_driver", id_vm="1", hostname="dummy-1", pool="web", status=FREE)
        )
        db.session.commit()

    retried = client.put(ASSIGN, json=body, headers=keyed("k"))

    assert retried.status_code == 200, retried.json
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.json["id_vm"] == "1"
    assert keys(app) == [("tester", "k", 200)]


def test_without_the_header_no_key_is_read_or_written(app, client, statements):
    """Without the header, no statement touches the keys."""
    assert client.put(ASSIGN, json=BODY).status_code == 200
    assert client.put(ASSIGN, json=BODY).status_code == 409
    assert client.post(START, json={"name": "w", "image": "1", "size": "1"}).status_code == 200

    assert statements
    assert not [statement for statement in statements if "idempotency_keys" in statement]
    assert keys(app) == []


def test_purge_expired_deletes_only_expired_keys(app, client):
    """Expired answers and requests that died go; live keys and running requests stay, the
    latter even past their expiry. purge_expired says how many went."""
    with app.app_context():
        limit = idempotency.running_limit()
    now, minute = utcnow(), datetime.timedelta(minutes=1)
    past, soon = now - datetime.timedelta(seconds=1), now + datetime.timedelta(hours=1)
    add_key(app, "expired", age=DAY, status_code=200, body="{}", expires_at=past)
    add_key(app, "live", age=minute, status_code=200, body="{}", expires_at=soon)
    add_key(app, "running", age=minute, expires_at=past)
    add_key(app, "died", age=limit + minute, expires_at=past)

    with app.app_context():
        purged = idempotency.purge_expired()
        again = idempotency.purge_expired()

    assert (purged, again) == (2, 0)
    assert keys(app) == [("tester", "live", 200), ("tester", "running", None)]
