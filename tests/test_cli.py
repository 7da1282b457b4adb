"""The `dispatcher` commands that manage the database and the users."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher import auth, database
from dispatcher.cli import users_group
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
        database.drop()
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
    """A deactivated user gets no token and its tokens end for good; activated, it logs
    in anew, and the tokens of before stay dead."""
    create(cli, "kim", "agent")
    token = login(app, "kim").json["token"]
    assert cli("users", "deactivate", "kim").exit_code == 0
    assert login(app, "kim").status_code == 403
    client = app.test_client()
    assert client.get("/api/v1/nodes", headers={"X-Auth-Token": token}).status_code == 401
    assert cli("users", "activate", "kim").exit_code == 0
    assert client.get("/api/v1/nodes", headers={"X-Auth-Token": token}).status_code == 401
    fresh = login(app, "kim").json["token"]
    assert client.get("/api/v1/nodes", headers={"X-Auth-Token": fresh}).status_code == 200


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
    """set-password replaces the password; the old one stops working, and so do the
    tokens issued with it."""
    create(cli, "ned")
    token = login(app, "ned").json["token"]
    new = "the-new-password"
    result = cli("users", "set-password", "ned", input=f"{new}\n{new}\n")
    assert result.exit_code == 0, result.output
    assert "its tokens revoked" in result.output
    assert login(app, "ned").status_code == 403
    assert login(app, "ned", new).status_code == 200
    client = app.test_client()
    assert client.put("/api/v1/test/start", headers={"X-Auth-Token": token}).status_code == 401


def test_set_password_keeping_the_tokens(app, cli):
    """--keep-tokens, said explicitly, lets the tokens already issued keep working."""
    create(cli, "ora")
    token = login(app, "ora").json["token"]
    new = "the-new-password"
    result = cli("users", "set-password", "ora", "--keep-tokens", input=f"{new}\n{new}\n")
    assert "its tokens kept" in result.output
    client = app.test_client()
    assert client.put("/api/v1/test/start", headers={"X-Auth-Token": token}).status_code == 200


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


def test_db_commands_and_their_help_name_no_migrations_folder(cli):
    """`db` offers the dispatcher's own commands, whose help names no folder to pass."""
    output = cli("db", "--help").output
    listed = output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed] == [
        "current",
        "downgrade",
        "history",
        "migrate",
        "stamp",
        "upgrade",
    ]
    for command in ((), *[(line.split()[0],) for line in listed]):
        result = cli("db", *command, "--help")
        assert result.exit_code == 0, result.output
        assert "--directory" not in result.output
        assert '"migrations"' not in result.output


def console_script(*args: str) -> str:
    """The standard output of the installed `dispatcher` command run with ``args``."""
    dispatcher = Path(sys.executable).with_name("dispatcher")
    return subprocess.run(
        [str(dispatcher), *args], capture_output=True, text=True, check=True
    ).stdout


# The commands the README documents, in --help's order.
DISPATCHER_COMMANDS = [
    "db",
    "env-file",
    "init-db",
    "ledger-sync",
    "pools",
    "populate-db",
    "quotas",
    "reconcile",
    "reset-db",
    "run",
    "usage",
    "users",
    "worker",
]


def test_console_script_offers_the_dispatchers_commands_only():
    """`dispatcher --help` lists the dispatcher's commands and options, none that other
    packages register with Flask (roles, limiter) and none of Flask's own (-A, -e)."""
    output = console_script("--help")
    options, commands = output.split("Options:\n", 1)[1].split("Commands:\n", 1)
    assert [line.split()[0] for line in commands.splitlines()] == DISPATCHER_COMMANDS
    assert [line.split()[0] for line in options.splitlines() if line.strip()] == [
        "--version",
        "--help",
    ]
    for option in ("-e, --env-file", "-A, --app", "--debug"):
        assert option not in output


def test_console_script_version():
    """`dispatcher --version` prints the dispatcher's version, not Flask's."""
    version = importlib.metadata.version("dispatcher")
    assert console_script("--version") == f"dispatcher {version}\n"


def test_the_apps_commands_are_the_dispatchers_only(app):
    """The app's command group holds the same commands: Flask-Security-Too's own users and
    roles commands are turned off."""
    assert sorted(app.cli.commands) == DISPATCHER_COMMANDS
    assert app.cli.commands["users"] is users_group


def test_env_file_writes_new_secrets_once_for_the_owner_only(cli, tmp_path):
    """env-file: production, two new secrets and the settings given, in a file of mode
    600 that a shell with `set -a` reads back as written; never over an existing file."""
    path = tmp_path / "dispatcher.env"
    url = "postgresql+psycopg://u:p@db.example.org/d"
    result = cli("env-file", str(path), f"DATABASE_URL={url}", "NOTE=two words")
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600
    read = subprocess.run(
        ["bash", "-c", f"set -a; . {path}; set +a; env"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout
    values = dict(line.split("=", 1) for line in read.splitlines() if "=" in line)
    assert values["DISPATCHER_CONFIG"] == "production"
    assert values["DATABASE_URL"] == url and values["NOTE"] == "two words"
    assert len(values["DISPATCHER_SECRET_KEY"]) >= 64
    assert values["DISPATCHER_SECRET_KEY"] != values["DISPATCHER_PASSWORD_SALT"]
    before = path.read_text()
    again = cli("env-file", str(path))
    assert again.exit_code == 1
    assert "exists" in again.output
    assert path.read_text() == before


@pytest.mark.parametrize(
    "setting", ["DISPATCHER_SECRET_KEY=mine", "no-equals", "lower=x", "Q=it's", "Q=a\\b"]
)
def test_env_file_refuses_what_it_cannot_write(cli, tmp_path, setting):
    result = cli("env-file", str(tmp_path / "e.env"), setting)
    assert result.exit_code == 2
    assert not (tmp_path / "e.env").exists()


@pytest.mark.parametrize(
    ("environment", "line"),
    [
        ({"DISPATCHER_CONFIG": "production"}, "DISPATCHER_SECRET_KEY must be set in production"),
        ({"DISPATCHER_CONFIG": "staging"}, "DISPATCHER_CONFIG='staging' is not one of"),
        ({"DISPATCHER_SETTINGS": "/nonexistent/settings.py"}, "DISPATCHER_SETTINGS names"),
    ],
)
def test_a_configuration_error_is_one_line_and_exit_1(tmp_path, environment, line):
    """Whatever is wrong with the configuration: one line naming it, no traceback."""
    dispatcher = Path(sys.executable).with_name("dispatcher")
    env = {**os.environ, "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance"), **environment}
    for variable in ("DISPATCHER_SECRET_KEY", "DISPATCHER_PASSWORD_SALT"):
        env.pop(variable, None)
    done = subprocess.run(
        [str(dispatcher), "users", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    [shown] = done.stderr.splitlines()
    assert shown.startswith(f"Error: {line}")
    assert done.stdout == ""
