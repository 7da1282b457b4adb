"""`dispatcher db upgrade`: the schema the Alembic migrations make, and upgrades keeping rows."""

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import CHEAP_PASSWORD_HASH, DUMMY_FARM, SQLITE_ONLY

from dispatcher import auth, create_app, database
from dispatcher.extensions import db
from dispatcher.models import AGENT, ASSIGNED, STATUS_NAMES, Span
from dispatcher.serializers import as_utc

HEAD = "0014"
PASSWORD = "a-long-enough-password"


@pytest.fixture
def app(any_database_url):
    """An app on an empty database: no table, no revision (not the suite's stamped schema)."""
    app = create_app(
        {
            "TESTING": True,
            "CLOUD_FARM": DUMMY_FARM,
            "SQLALCHEMY_DATABASE_URI": any_database_url,
            **CHEAP_PASSWORD_HASH,
        }
    )
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args):
        result = runner.invoke(args=list(args))
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def tables(app) -> set[str]:
    with app.app_context():
        return set(sqlalchemy.inspect(db.engine).get_table_names())


def revision(app) -> str | None:
    with app.app_context():
        return database.current()


def fill_at_first_revision(app) -> str:
    """Rows of every kind at revision 0001: a user with a token, an assignment, a history line.

    Returns the token. The history line is written as 0001 knew it, without request_id.
    """
    with app.app_context():
        auth.ensure_roles()
        user = auth.create_user("keeper", PASSWORD, roles=(AGENT,))
        token = user.get_auth_token()
        db.session.execute(
            sqlalchemy.text(
                'INSERT INTO assignments (cloud, id_vm, hostname, recipe, "user", status)'
                " VALUES ('fake_driver', '1', 'dummy-1', 'app', 'alice', :status)"
            ),
            {"status": ASSIGNED},
        )
        db.session.execute(
            sqlalchemy.text(
                'INSERT INTO audit_entries (cloud, action, id_vm, hostname, caller, "user",'
                " vm_type, outcome, message) VALUES ('fake_driver', 'assign', '1', 'dummy-1',"
                " 'keeper', 'alice', 'app', 'ok', 'Node 1 assigned')"
            )
        )
        db.session.commit()
    return token


def assert_rows_kept(app, token: str) -> None:
    """What fill_at_first_revision wrote still works: the login, the token, the ledger, history."""
    client = app.test_client()
    login = client.post("/api/v1/auth", json={"username": "keeper", "password": PASSWORD})
    assert login.status_code == 200, login.json
    headers = {"X-Auth-Token": token}
    assert client.put("/api/v1/test/start", headers=headers).status_code == 200
    status = client.get("/api/v1/vm/status/fake_driver", headers=headers).json
    assert [(row["id_vm"], row["user"], row["status"]) for row in status["nodes"]] == [
        ("1", "alice", ASSIGNED)
    ]
    history = client.get("/api/v1/vm/history/fake_driver", headers=headers).json["history"]
    assert [(entry["caller"], entry["outcome"], entry["request_id"]) for entry in history] == [
        ("keeper", "ok", None)
    ]
    with app.app_context():
        kept = db.session.execute(sqlalchemy.text("SELECT pool, status FROM assignments")).all()
    assert [tuple(row) for row in kept] == [(None, ASSIGNED)]  # in no warm pool


def test_upgrade_makes_the_schema_of_the_models(app, cli):
    """On an empty database: every table, at the newest revision, exactly as the models say."""
    output = cli("db", "upgrade")

    assert f"database at revision {HEAD} (was empty)" in output
    assert tables(app) == {
        "alembic_version",
        "users",
        "roles",
        "roles_users",
        "assignments",
        "audit_entries",
        "secret_fingerprints",
        "pool_clouds",
        "pool_passes",
        "webhook_deliveries",
        "idempotency_keys",
        "reconcile_surveys",
        "pool_levels",
        "spans",
        "quota_rules",
        "pool_overrides",
        "vm_requests",
        "table_revisions",
    }
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), db.metadata
        )
    assert differences == []


def test_upgrade_from_the_first_migration_keeps_users_tokens_and_assignments(app, cli):
    """A database made by migration 0001, with rows: upgraded, every row and token still works."""
    cli("db", "upgrade", "--revision", "0001")
    assert revision(app) == "0001"
    token = fill_at_first_revision(app)

    output = cli("db", "upgrade")

    assert f"database at revision {HEAD} (was 0001)" in output
    assert_rows_kept(app, token)


def test_upgrade_adopts_a_database_made_before_the_migrations(app, cli):
    """Tables without any revision (what init-db made before): recognised, upgraded, rows kept."""
    cli("db", "upgrade", "--revision", "0001")
    token = fill_at_first_revision(app)
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP TABLE alembic_version"))
    assert revision(app) is None

    output = cli("db", "upgrade")

    assert f"database at revision {HEAD} (was 0001, the schema made before migrations)" in output
    assert_rows_kept(app, token)


def test_upgrade_twice_changes_nothing_the_second_time(app, cli):
    """An upgrade of an up-to-date database is a no-op that keeps the rows."""
    cli("db", "upgrade", "--revision", "0001")
    token = fill_at_first_revision(app)
    cli("db", "upgrade")

    output = cli("db", "upgrade")

    assert f"database at revision {HEAD} (was {HEAD})" in output
    assert_rows_kept(app, token)


def test_downgrade_then_upgrade_keeps_the_rows(app, cli):
    """Back to 0001 (the request id column goes) and forward again: the rows stay."""
    cli("db", "upgrade", "--revision", "0001")
    token = fill_at_first_revision(app)
    cli("db", "upgrade")

    cli("db", "downgrade", "0001")
    assert revision(app) == "0001"
    with app.app_context():
        columns = {c["name"] for c in sqlalchemy.inspect(db.engine).get_columns("audit_entries")}
    assert "request_id" not in columns
    cli("db", "upgrade")

    assert_rows_kept(app, token)


def test_upgrade_sql_prints_the_statements_and_changes_nothing(app, cli):
    """--sql shows what the upgrade would run; the database stays empty."""
    output = cli("db", "upgrade", "--sql")

    assert "CREATE TABLE users" in output
    assert "ALTER TABLE audit_entries ADD COLUMN request_id" in output
    assert tables(app) == set()


@SQLITE_ONLY  # alembic's commands, the same on both
def test_current_and_history_on_an_empty_database(app, any_database_url, tmp_path):
    """Before any upgrade `dispatcher db current` shows no revision and `db history` every
    migration; after it, `db current` shows the newest."""

    def dispatcher(*args: str) -> str:
        env = {
            **os.environ,
            "DATABASE_URL": any_database_url,
            "DISPATCHER_INSTANCE_PATH": str(tmp_path / "instance"),
        }
        command = [str(Path(sys.executable).with_name("dispatcher")), *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert dispatcher("db", "current") == ""
    history = dispatcher("db", "history").splitlines()
    assert history[0].split(",")[0].endswith(f"-> {HEAD} (head)")
    assert history[-1].startswith("<base> -> 0001, ")
    assert tables(app) == set()

    dispatcher("db", "upgrade")

    assert dispatcher("db", "current") == f"{HEAD} (head)\n"


def test_init_db_and_run_upgrade_too(app, cli):
    """init-db brings the schema to the newest revision, as `db upgrade` does."""
    output = cli("init-db")

    assert f"database ready at revision {HEAD}" in output
    assert revision(app) == HEAD


def test_upgrade_of_a_database_that_does_not_answer_is_a_one_line_error(refusing_port):
    """No traceback and no password: what failed, and exit status 1."""
    url = f"postgresql+psycopg://postgres:a-secret-password@127.0.0.1:{refusing_port}/test"
    app = create_app({"TESTING": True, "CLOUD_FARM": DUMMY_FARM, "SQLALCHEMY_DATABASE_URI": url})

    result = app.test_cli_runner().invoke(args=["db", "upgrade"])

    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot use the database: connection failed")
    assert "Connection refused" in result.output
    assert "Traceback" not in result.output
    assert "a-secret-password" not in result.output


def test_the_assignments_held_before_quotas_become_assigned_spans(app, cli):
    """0008 counts what is held already as holdings, which 0013 turns into spans: each
    assigned VM's, from its assign on, with its assigner, user, pool (or vm_type) and its
    lease's end; a free pool VM gets a free span from when it was ready."""
    cli("db", "upgrade", "--revision", "0007")
    with app.app_context():
        db.session.execute(
            sqlalchemy.text(
                'INSERT INTO assignments (cloud, id_vm, hostname, recipe, pool, status, "user",'
                " assigned_by, assigned_at, expires_at, ready_at) VALUES"
                " ('default', '1', 'web-1', 'web', 'web', :assigned, 'ada', 'keeper',"
                " '2026-12-01 09:00:00+00:00', '2026-12-01 10:00:00+00:00', NULL),"
                " ('default', '2', 'web-2', 'web', 'web', :free, NULL, NULL, NULL, NULL,"
                " '2026-12-01 07:00:00+00:00'),"
                " ('fake_driver', '3', 'dummy-3', 'app', NULL, :assigned, 'bob', 'other',"
                " '2026-12-01 08:00:00+00:00', NULL, NULL)"
            ),
            {"assigned": ASSIGNED, "free": 1},
        )
        db.session.commit()

    cli("db", "upgrade", "--revision", "0012")
    with app.app_context():
        holdings = db.session.execute(sqlalchemy.text("SELECT count(*) FROM holdings")).scalar()
    assert holdings == 2
    cli("db", "upgrade")

    with app.app_context():
        found = db.session.scalars(sqlalchemy.select(Span).order_by(Span.started_at))
        spans = [
            (
                span.cloud,
                STATUS_NAMES[span.status],
                span.user,
                span.holder,
                span.pool,
                span.vm_type,
                as_utc(span.started_at),
                as_utc(span.lease_until),
                span.ended_at,
            )
            for span in found
        ]
    moment = datetime.datetime.fromisoformat
    assert spans == [
        ("default", "FREE", None, None, "web", "web", moment("2026-12-01T07:00:00+00:00"),
         None, None),
        ("fake_driver", "ASSIGNED", "bob", "other", None, "app",
         moment("2026-12-01T08:00:00+00:00"), None, None),
        ("default", "ASSIGNED", "ada", "keeper", "web", "web",
         moment("2026-12-01T09:00:00+00:00"), moment("2026-12-01T10:00:00+00:00"), None),
    ]  # fmt: skip
