"""What fuzzing the live server found (docs/testing.md), each kept fixed by a focused test."""

import pytest
from conftest import assert_error

# Deeper than Python's recursion limit: the json module gives up with a RecursionError.
DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def database_url(any_database_url):
    """SQLite, and PostgreSQL where it answers: the text findings were PostgreSQL's 500s."""
    return any_database_url


def test_username_with_nul_is_400_not_500(anonymous):
    """POST /auth with a NUL in the username: 400 naming the field (PostgreSQL said 500)."""
    response = anonymous.post("/api/v1/auth", json={"username": "ad\x00min", "password": "x" * 8})
    assert response.status_code == 400
    assert response.json["message"] == "username: no NUL character"


@pytest.mark.parametrize("field", ["user", "vm_type", "hostname"])
@pytest.mark.parametrize(
    ("text", "rule"),
    [("zep\x00polo", "no NUL character"), ("z" * 256, "at most 255 characters")],
)
def test_assign_text_with_nul_or_too_long_is_400_and_not_recorded(client, field, text, rule):
    """A NUL or more than 255 characters in a stored field is a 400 before anything happens."""
    body = {"node": "1", "user": "zeppolo", "vm_type": "app", field: text}
    if field == "hostname":
        del body["node"]
    response = client.put("/api/v1/vm/action/assign/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"] == f"{field}: {rule}"
    assert client.get("/api/v1/vm/history/fake_driver").json["history"] == []


@pytest.mark.parametrize("field", ["username", "password"])
def test_credentials_with_a_lone_surrogate_are_400_not_500(anonymous, field):
    """JSON's "\\ud800" cannot be encoded for the database or the hasher: 400, not 500."""
    body = {"username": "admin", "password": "x" * 8, field: "ad\ud800min"}
    response = anonymous.post("/api/v1/auth", json=body)
    assert response.status_code == 400
    assert response.json["message"] == f"{field}: not valid Unicode"


def test_assign_user_with_a_lone_surrogate_is_400_not_500(client):
    """A lone surrogate in a stored field: 400 naming the field, nothing recorded."""
    body = {"node": "1", "user": "zep\udc00polo", "vm_type": "app"}
    response = client.put("/api/v1/vm/action/assign/fake_driver", json=body)
    assert response.status_code == 400
    assert response.json["message"] == "user: not valid Unicode"
    assert client.get("/api/v1/vm/history/fake_driver").json["history"] == []


def test_assign_text_of_255_characters_is_stored(client):
    """The longest text a field takes fits its column, on every database."""
    body = {"node": "1", "user": "u" * 255, "vm_type": "v" * 255}
    response = client.put("/api/v1/vm/action/assign/fake_driver", json=body)
    assert response.status_code == 200, response.json
    [row] = client.get("/api/v1/vm/status/fake_driver").json["nodes"]
    assert (row["user"], row["recipe"]) == ("u" * 255, "v" * 255)


@pytest.mark.parametrize("value", ["²", "1²"])
def test_history_limit_of_other_digits_is_400_not_500(client, value):
    """?limit= takes ASCII digits only: "²" passed str.isdigit() and crashed int() (500)."""
    response = client.get("/api/v1/vm/history/fake_driver", query_string={"limit": value})
    assert response.status_code == 400
    assert response.json["message"] == "limit: a whole number from 1 to 1000"


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_body_nested_too_deeply_is_malformed_json_not_500(client, content_type):
    """A body nested deeper than the parser's recursion: 400 "Malformed JSON stream"."""
    response = client.put("/api/v1/vm/stop", data=DEEP_JSON, content_type=content_type)
    assert response.status_code == 400
    assert response.json["message"].startswith("Malformed JSON stream")


def test_body_nested_too_deeply_does_not_break_token_auth(client, anonymous):
    """Flask-Security reads auth_token from a JSON body: a too deep one is no token, not a 500."""
    response = client.put("/api/v1/test/start", data=DEEP_JSON, content_type="application/json")
    assert response.status_code == 200
    response = anonymous.put("/api/v1/test/start", data=DEEP_JSON, content_type="application/json")
    assert response.status_code == 401
    response = anonymous.post("/api/v1/", data=DEEP_JSON, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1/auth"])
def test_json_constants_that_are_not_json_are_400(anonymous, path, constant):
    """Python's json reads NaN and Infinity; JSON has neither: 400 naming it, anywhere."""
    body = f'{{"username": "admin", "password": "xxxxxxxx", "extra": [1, {constant}]}}'
    response = anonymous.post(path, data=body, content_type="application/json")
    assert_error(response, 400, f"Malformed JSON stream: {constant} is not JSON")


def test_a_lone_surrogate_anywhere_in_a_body_is_400_naming_where(client):
    """A field the view ignores is refused too, named by its path, never by its value."""
    body = '{"node": "1", "user": "u", "vm_type": "v", "note": {"tags": ["ok", "a\\ud800"]}}'
    response = client.put(
        "/api/v1/vm/action/assign/fake_driver", data=body, content_type="application/json"
    )
    assert_error(response, 400, "note.tags[1]: not valid Unicode")
    assert client.get("/api/v1/vm/history/fake_driver").json["history"] == []
    key = '{"node": "1", "user": "u", "vm_type": "v", "\\udc00": 1}'
    response = client.put(
        "/api/v1/vm/action/assign/fake_driver", data=key, content_type="application/json"
    )
    assert_error(response, 400, "Malformed JSON stream: a key is not valid Unicode")


def test_a_token_in_a_body_with_nan_is_no_token(client, anonymous):
    """Flask-Security-Too reads auth_token with the same parser: a valid token in a body
    that is not strict JSON is no token."""
    token = client.environ_base["HTTP_X_AUTH_TOKEN"]
    body = f'{{"auth_token": "{token}", "n": NaN}}'
    response = anonymous.put("/api/v1/test/start", data=body, content_type="application/json")
    assert response.status_code == 401
    assert response.json["status"] == "error"
    good = anonymous.put("/api/v1/test/start", json={"auth_token": token, "n": 1})
    assert good.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/"),
        ("post", "/api/v1/auth"),
        ("put", "/api/v1/test/start"),
        ("put", "/api/v1/vm/action/assign/fake_driver"),
    ],
)
def test_a_body_over_max_content_length_is_413_before_it_is_read(anonymous, method, path):
    """MAX_CONTENT_LENGTH (1 MB by default) bounds every body, anonymous ones and the login."""
    body = b'{"username": "' + b"a" * (1024 * 1024) + b'", "password": "xxxxxxxx"}'
    response = getattr(anonymous, method)(path, data=body, content_type="application/json")
    assert_error(response, 413, "Request body too large: at most 1048576 bytes")


def test_max_content_length_is_a_setting(make_app):
    """A smaller limit refuses a smaller body; a body under it is read as before."""
    app = make_app(MAX_CONTENT_LENGTH=100)
    client = app.test_client()
    assert_error(
        client.post("/api/v1/", json={"x": "y" * 100}),
        413,
        "Request body too large: at most 100 bytes",
    )
    assert client.post("/api/v1/", json={"x": "y"}).json == {"status": "ok"}
