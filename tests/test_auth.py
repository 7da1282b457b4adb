"""Token authentication: getting, using, expiring and revoking tokens; roles."""

import ast
import time
from pathlib import Path

import pytest
from conftest import SQLITE_ONLY, token_client

import dispatcher
from dispatcher import auth
from dispatcher.api.base import ApiView, agent_required, ok
from dispatcher.extensions import db
from dispatcher.models import User

PASSWORD = "correct horse battery"
LISTINGS = ["nodes", "images", "flavors", "sizes", "tenants"]
LISTING = "/api/v1/nodes/fake_driver"


@pytest.fixture
def database_url(any_database_url):
    """Every test here runs on SQLite and, where a server answers, on PostgreSQL."""
    return any_database_url


@pytest.fixture
def alice(app):
    """An active user with role agent."""
    with app.app_context():
        auth.create_user("alice", PASSWORD, roles=("agent",), email="alice@example.org")


def get_token(client, username="alice", password=PASSWORD):
    response = client.post("/api/v1/auth", json={"username": username, "password": password})
    assert response.status_code == 200, response.json
    return response.json["token"]


def test_auth_answers_a_token_as_the_original(anonymous, alice):
    """POST /api/v1/auth answers status ok, status_code 200 and the token."""
    response = anonymous.post("/api/v1/auth", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json
    assert list(body) == ["status", "status_code", "token"]
    assert body["status"] == "ok"
    assert body["status_code"] == 200
    assert len(body["token"]) > 40


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password"), ("nobody", PASSWORD)],
)
def test_wrong_password_or_unknown_user_is_403(anonymous, alice, username, password):
    """Wrong password and unknown user get the same 403 "Forbidden"."""
    response = anonymous.post("/api/v1/auth", json={"username": username, "password": password})
    assert response.status_code == 403
    assert response.json["status"] == "error"
    assert response.json["message"] == "Forbidden"
    assert password not in response.get_data(as_text=True)


def test_inactive_user_gets_no_token(app, anonymous, alice):
    """A deactivated user is refused like a wrong password."""
    with app.app_context():
        auth.set_active("alice", False)
    response = anonymous.post("/api/v1/auth", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json["message"] == "Forbidden"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "missing fields: 'password', 'username'"),
        ({"username": "alice"}, "missing field: 'password'"),
        ({"username": "alice", "password": ""}, "password: non-empty string"),
        ({"username": 7, "password": "x"}, "username: non-empty string"),
        (["alice", PASSWORD], "Malformed JSON stream"),
    ],
)
def test_malformed_credentials_are_400_naming_the_field(anonymous, body, message):
    """A body that misses or mistypes a field is a 400 that names it, never the value."""
    response = anonymous.post("/api/v1/auth", json=body)
    assert response.status_code == 400
    assert response.json["message"].startswith(message)
    assert PASSWORD not in response.json["message"]


def test_auth_body_that_is_not_json_is_400(anonymous):
    """A body that is not JSON at all gets the original's message."""
    response = anonymous.post("/api/v1/auth", data="username=alice", content_type="text/plain")
    assert response.status_code == 400
    assert response.json["message"] == "Malformed JSON stream"


@pytest.mark.parametrize("action", LISTINGS)
def test_listings_need_a_token(anonymous, action):
    """Every listing answers 401 with the envelope without a token."""
    for path in (f"/api/v1/{action}", f"/api/v1/{action}/fake_driver", f"/api/v2/{action}"):
        response = anonymous.get(path)
        assert response.status_code == 401
        assert response.json["status"] == "error"
        assert response.json["status_short_message"] == "Unauthorized"


@pytest.mark.parametrize("action", LISTINGS)
@pytest.mark.parametrize("place", ["header", "query", "json"])
@SQLITE_ONLY
def test_token_accepted_in_each_of_the_three_places(anonymous, alice, action, place):
    """The token works in X-Auth-Token, ?auth_token= and the JSON body's auth_token."""
    token = get_token(anonymous)
    path = f"/api/v1/{action}/fake_driver"
    if place == "header":
        response = anonymous.get(path, headers={"X-Auth-Token": token})
    elif place == "query":
        response = anonymous.get(path, query_string={"auth_token": token})
    else:
        response = anonymous.get(path, json={"auth_token": token})
    assert response.status_code == 200
    assert response.json["status"] == "ok"


@pytest.mark.parametrize(
    "around",
    [(" ", ""), ("", " "), ("\t", "\t"), (" \t  ", "\t \t")],
    ids=["space before", "space after", "tabs", "spaces and tabs"],
)
def test_spaces_and_tabs_around_the_header_token_are_not_part_of_it(anonymous, alice, around):
    """HTTP: a field value's surrounding whitespace is not part of it (RFC 9110, 5.5)."""
    before, after = around
    token = get_token(anonymous)
    response = anonymous.get(LISTING, headers={"X-Auth-Token": f"{before}{token}{after}"})
    assert response.status_code == 200, response.json


@pytest.mark.parametrize("inside", [" ", "\t"], ids=["space", "tab"])
def test_whitespace_inside_the_token_is_refused(anonymous, alice, inside):
    """Only the header value's edges are trimmed: a token broken by a space or a tab, or one
    with spaces around it in the query string, is no token."""
    token = get_token(anonymous)
    broken = f"{token[:10]}{inside}{token[10:]}"
    assert anonymous.get(LISTING, headers={"X-Auth-Token": broken}).status_code == 401
    spaced = anonymous.get(LISTING, query_string={"auth_token": f" {token} "})
    assert spaced.status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/cloud", "/api/v1/test/start"])
def test_other_endpoints_need_a_token_too(anonymous, path):
    """/cloud and the token check are closed without a token as well."""
    method = anonymous.put if path.endswith("start") else anonymous.get
    assert method(path).status_code == 401


def test_public_endpoints_need_no_token(anonymous):
    """The root and the auth endpoint are open."""
    assert anonymous.get("/api/v1/").status_code == 200
    assert (
        anonymous.post("/api/v1/auth", json={"username": "x", "password": "y"}).status_code == 403
    )


def test_token_check_with_the_token_in_the_json_body(anonymous, alice):
    """The original's connection test: PUT /api/v1/test/start with the token in the body."""
    response = anonymous.put("/api/v1/test/start", json={"auth_token": get_token(anonymous)})
    assert response.status_code == 200
    assert response.json == {"status": "ok", "test": "passed", "authenticated": "yes"}


def test_forged_token_is_401(app, anonymous, alice):
    """A token signed with another key is refused."""
    token = get_token(anonymous)
    payload, _, signature = token.rpartition(".")
    forged = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    assert anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": forged}).status_code == 401
    assert anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": "garbage"}).status_code == 401


def test_expired_token_is_401(app, anonymous, alice, monkeypatch):
    """A token older than SECURITY_TOKEN_MAX_AGE is refused."""
    max_age = app.config["SECURITY_TOKEN_MAX_AGE"].total_seconds()
    now = time.time()
    with monkeypatch.context() as past:
        past.setattr(time, "time", lambda: now - max_age - 60)
        old_token = get_token(anonymous)
    fresh_token = get_token(anonymous)
    assert anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": old_token}).status_code == 401
    assert anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": fresh_token}).status_code == 200


def test_token_max_age_is_configurable(make_app, monkeypatch):
    """SECURITY_TOKEN_MAX_AGE in seconds decides when tokens expire."""
    app = make_app(SECURITY_TOKEN_MAX_AGE=120)
    client = token_client(app)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 60)
    assert client.get("/api/v1/nodes").status_code == 200
    monkeypatch.setattr(time, "time", lambda: now + 180)
    assert client.get("/api/v1/nodes").status_code == 401


def test_delete_auth_revokes_the_callers_tokens(app, anonymous, alice):
    """DELETE /api/v1/auth invalidates every token of the caller, and only the caller's."""
    first, second = get_token(anonymous), get_token(anonymous)
    other = token_client(app, "bob")
    response = anonymous.delete("/api/v1/auth", headers={"X-Auth-Token": first})
    assert response.status_code == 200
    assert response.json == {"status": "ok", "result": "tokens revoked"}
    for token in (first, second):
        assert anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": token}).status_code == 401
    assert other.get("/api/v1/nodes").status_code == 200
    assert (
        anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": get_token(anonymous)}).status_code
        == 200
    )


def test_delete_auth_without_a_token_is_401(anonymous):
    """Revoking needs a token to know whose."""
    assert anonymous.delete("/api/v1/auth").status_code == 401


def test_deactivated_users_tokens_stop_working(app, anonymous, alice):
    """Deactivating a user shuts out the tokens it holds."""
    token = get_token(anonymous)
    with app.app_context():
        auth.set_active("alice", False)
    assert anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": token}).status_code == 401


@pytest.mark.password_hashing
def test_database_holds_only_a_password_hash(app, alice):
    """The stored password is an argon2 hash, and the plain text is nowhere in the row."""
    with app.app_context():
        row = db.session.execute(db.select(User.__table__)).mappings().one()
    assert row["password"].startswith("$argon2")
    assert all(PASSWORD not in str(value) for value in row.values())


@pytest.mark.password_hashing
def test_database_file_holds_no_plaintext_password(database_url, app, alice):
    """Not even the SQLite file's bytes contain the password."""
    if not database_url.startswith("sqlite:///"):
        pytest.skip("a file only for SQLite")
    with app.app_context():
        db.engine.dispose()
    with open(database_url.removeprefix("sqlite:///"), "rb") as database_file:
        raw = database_file.read()
    assert b"alice" in raw
    assert PASSWORD.encode() not in raw


def test_roles_guard_changes(make_app):
    """A view guarded by agent_required answers 403 to a user without agent or admin."""
    app = make_app()

    class ChangeSomething(ApiView):
        @agent_required
        def put(self):
            return ok(changed=True)

    app.add_url_rule("/api/v1/change-something", view_func=ChangeSomething.as_view("change"))
    reader = token_client(app, "reader", roles=())
    agent = token_client(app, "agent", roles=("agent",))
    admin = token_client(app, "root", roles=("admin",))
    response = reader.put("/api/v1/change-something")
    assert response.status_code == 403
    assert response.json["message"] == "Forbidden: this needs the role agent or admin"
    assert reader.get("/api/v1/nodes").status_code == 200
    assert agent.put("/api/v1/change-something").json == {"status": "ok", "changed": True}
    assert admin.put("/api/v1/change-something").status_code == 200


def test_no_password_or_token_in_the_logs(app, anonymous, alice, caplog):
    """Logging at DEBUG while tokens are issued, used, refused and revoked shows neither."""
    caplog.set_level("DEBUG")
    token = get_token(anonymous)
    anonymous.post("/api/v1/auth", json={"username": "alice", "password": "wrong-" + PASSWORD})
    anonymous.get("/api/v1/nodes", query_string={"auth_token": token})
    anonymous.delete("/api/v1/auth", headers={"X-Auth-Token": token})
    anonymous.get("/api/v1/nodes", headers={"X-Auth-Token": token})
    assert caplog.records
    assert PASSWORD not in caplog.text
    assert token not in caplog.text
    assert token[-20:] not in caplog.text


def altered(token: str) -> list[str]:
    """Texts that decode to the same signed token: padding added, and the last
    character with its unused low bits changed."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(token[-1]) ^ 1]
    return [token + "=", token + "==", token[:-1] + last]


def test_a_token_is_accepted_only_exactly_as_issued(anonymous, alice):
    """Base64 forgives padding and unused bits; the dispatcher does not."""
    token = get_token(anonymous)
    check = "/api/v1/test/start"
    assert anonymous.put(check, headers={"X-Auth-Token": token}).status_code == 200
    for variant in altered(token):
        for sent in (
            {"headers": {"X-Auth-Token": variant}},
            {"query_string": {"auth_token": variant}},
            {"json": {"auth_token": variant}},
        ):
            response = anonymous.put(check, **sent)
            assert response.status_code == 401, (variant, sent)
            assert response.json["status"] == "error"


# What the auth package may import of the dispatcher: the layer below it (docs/overview.md).
AUTH_MAY_IMPORT = {"models", "database", "errors", "config", "metrics", "extensions", "auth"}


def dispatcher_imports(path: Path) -> set[str]:
    """The dispatcher's modules a module of the auth package imports, by their name right
    under ``dispatcher`` (``auth`` for the package's own)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add("auth")
        elif isinstance(node, ast.ImportFrom) and node.level == 2:
            names |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dispatcher"):
            parts = node.module.split(".")
            names |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("dispatcher.")}
    return names


def test_the_auth_package_imports_only_the_layer_below_it():
    """Beside clouds and bookkeeping: models, database, errors, config, metrics and
    extensions, never api, cli, operations, pools or the like."""
    package = Path(dispatcher.__file__).with_name("auth")
    imported = {path.name: dispatcher_imports(path) for path in sorted(package.glob("*.py"))}
    assert {name: found - AUTH_MAY_IMPORT for name, found in imported.items()} == {
        name: set() for name in imported
    }
