"""The `dispatcher` commands that manage the database and the users."""

import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher import auth, schema
from dispatcher.extensions import db
from dispatcher.models import Role, User

PASSWORD = "a-long-enough-password"


@pytest.fixture
def database_url(any_database_url):
    """Every test here runs on SQLite and, where a server answers, on PostgreSQL."""
    return any_database_url


@pytest.fixture
def cli(app):
    """Invoke a `dispatcher` command on the test's app."""
    runner = app.test_cli_runner()

    def invoke(*args, input=None):  # noqa: A002 (click's name)
        return runner.invoke(args=list(args), input=input)

    return invoke


def usernames(app):
    with app.app_context():
        return [user.username for user in auth.list_users()]


def login(app, username, password=PASSWORD):
    return app.test_client().post("/api/v1/auth", json={"username": username, "password": password})


def create(cli, username, *roles, password=PASSWORD):
    args = ["users", "create", username, *[part for role in roles for part in ("--role", role)]]
    return cli(*args, input=f"{password}\n{password}\n")


def test_init_db_creates_tables_and_roles_and_keeps_rows(app, cli):
    """init-db makes the roles; run again, it keeps the users there are."""
    with app.app_context():
        schema.drop()
    result = cli("init-db")
    assert result.exit_code == 0, result.output
    assert create(cli, "carol", "agent").exit_code == 0
    assert cli("init-db").exit_code == 0
    with app.app_context():
        assert sorted(db.session.scalars(db.select(Role.name))) == ["admin", "agent"]
    assert usernames(app) == ["carol"]


def test_reset_db_asks_first(app, cli):
    """reset-db without --yes asks, and a no leaves every row in place."""
    create(cli, "carol", "agent")
    result = cli("reset-db", input="n\n")
    assert result.exit_code == 1
    assert "Drop every table" in result.output
    assert usernames(app) == ["carol"]


def test_reset_db_yes_empties_the_database(app, cli):
    """reset-db --yes drops the users and makes the roles anew."""
    create(cli, "carol", "agent")
    result = cli("reset-db", "--yes")
    assert result.exit_code == 0, result.output
    assert usernames(app) == []
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Role.id))) == 2


def test_populate_db_makes_a_demo_agent(app, cli):
    """populate-db creates the demo user with role agent, once."""
    result = cli("populate-db", "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    response = login(app, "demo")
    assert response.status_code == 200
    with app.app_context():
        assert [role.name for role in auth.get_user("demo").roles] == ["agent"]
    again = cli("populate-db")
    assert again.exit_code == 0
    assert "exists already" in again.output
    assert usernames(app) == ["demo"]


def test_populate_db_generates_and_shows_a_password(app, cli):
    """Without --password the demo user's password is generated and printed once."""
    result = cli("populate-db")
    assert result.exit_code == 0, result.output
    password = result.output.strip().rsplit(" ", 1)[1]
    assert login(app, "demo", password).status_code == 200


def test_users_create_with_roles_then_login(app, cli):
    """users create asks the password twice and makes a user that can log in."""
    result = create(cli, "dave", "agent", "admin")
    assert result.exit_code == 0, result.output
    assert "created user 'dave' with roles agent, admin" in result.output
    assert PASSWORD not in result.output
    assert login(app, "dave").status_code == 200
    with app.app_context():
        assert sorted(role.name for role in auth.get_user("dave").roles) == ["admin", "agent"]


def test_users_create_duplicate_is_an_error_and_writes_nothing(app, cli):
    """A username that exists already is refused; the first user is unchanged."""
    create(cli, "dave", "agent")
    result = create(cli, "dave", "admin", password="another-password")
    assert result.exit_code == 1
    assert "Error: user 'dave' exists already" in result.output
    assert usernames(app) == ["dave"]
    assert login(app, "dave").status_code == 200
    with app.app_context():
        assert [role.name for role in auth.get_user("dave").roles] == ["agent"]


def test_users_create_taken_email_writes_nothing(app, cli):
    """An email another user has is refused before anything is written."""
    cli("users", "create", "erin", "--email", "e@example.org", input=f"{PASSWORD}\n{PASSWORD}\n")
    result = cli(
        "users", "create", "frank", "--email", "e@example.org", input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 1
    assert "belongs to another user" in result.output
    assert usernames(app) == ["erin"]


def test_users_create_unknown_role_is_refused(app, cli):
    """A role that does not exist is refused, naming the choices, and no user is made."""
    result = create(cli, "gina", "superuser")
    assert result.exit_code == 2
    assert "'superuser' is not one of 'admin', 'agent'" in result.output
    assert usernames(app) == []


@pytest.mark.password_hashing
def test_users_create_short_password_is_refused(app, cli):
    """A password under SECURITY_PASSWORD_LENGTH_MIN characters makes no user."""
    result = create(cli, "hank", "agent", password="short")
    assert result.exit_code == 1
    assert "password: at least 8 characters" in result.output
    assert usernames(app) == []


def test_users_list(cli):
    """users list shows each user's state and roles."""
    create(cli, "ivy", "agent")
    create(cli, "jon")
    cli("users", "deactivate", "jon")
    assert cli("users", "list").output.splitlines() == ["ivy\tactive\tagent", "jon\tinactive\t-"]


def test_deactivate_and_activate(app, cli):
    """A deactivated user gets no token and its tokens stop; activated, it is back."""
    create(cli, "kim", "agent")
    token = login(app, "kim").json["token"]
    assert cli("users", "deactivate", "kim").exit_code == 0
    assert login(app, "kim").status_code == 403
    client = app.test_client()
    assert client.get("/api/v1/nodes", headers={"X-Auth-Token": token}).status_code == 401
    assert cli("users", "activate", "kim").exit_code == 0
    assert client.get("/api/v1/nodes", headers={"X-Auth-Token": token}).status_code == 200


def test_add_and_remove_role(app, cli):
    """add-role and remove-role change the user's roles and say when nothing changed."""
    create(cli, "lee")
    assert "now has role admin" in cli("users", "add-role", "lee", "admin").output
    assert "already had role admin" in cli("users", "add-role", "lee", "admin").output
    with app.app_context():
        assert [role.name for role in auth.get_user("lee").roles] == ["admin"]
    assert "no longer has role admin" in cli("users", "remove-role", "lee", "admin").output
    assert "did not have role admin" in cli("users", "remove-role", "lee", "admin").output
    with app.app_context():
        assert auth.get_user("lee").roles == []


def test_revoke_tokens(app, cli):
    """An admin revokes a user's tokens from the command line."""
    create(cli, "max", "agent")
    token = login(app, "max").json["token"]
    result = cli("users", "revoke-tokens", "max")
    assert result.exit_code == 0
    assert (
        app.test_client().get("/api/v1/nodes", headers={"X-Auth-Token": token}).status_code == 401
    )


def test_set_password(app, cli):
    """set-password replaces the password; the old one stops working."""
    create(cli, "ned")
    new = "the-new-password"
    result = cli("users", "set-password", "ned", input=f"{new}\n{new}\n")
    assert result.exit_code == 0, result.output
    assert login(app, "ned").status_code == 403
    assert login(app, "ned", new).status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ("users", "activate", "nobody"),
        ("users", "deactivate", "nobody"),
        ("users", "add-role", "nobody", "agent"),
        ("users", "revoke-tokens", "nobody"),
    ],
)
def test_unknown_user_is_a_clear_error(cli, args):
    """Naming a user that does not exist is a one-line error, exit status 1."""
    result = cli(*args)
    assert result.exit_code == 1
    assert result.output == "Error: no user 'nobody'\n"


@pytest.mark.password_hashing
def test_passwords_are_stored_hashed(app, cli):
    """The users table holds an argon2 hash, never the password."""
    create(cli, "olga", "agent")
    with app.app_context():
        stored = db.session.scalar(db.select(User.password).where(User.username == "olga"))
    assert stored.startswith("$argon2")
    assert PASSWORD not in stored


def test_console_script_lists_the_commands():
    """The installed `dispatcher` command offers the commands of this module."""
    dispatcher = Path(sys.executable).with_name("dispatcher")
    output = subprocess.run(
        [str(dispatcher), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "init-db", "reset-db", "populate-db", "users"):
        assert f"  {command}" in output
