"""Configuration in layers: class, settings file, environment, then the factory's argument."""

import importlib
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy
from conftest import CHEAP_PASSWORD_HASH, token_client

from dispatcher import create_app
from dispatcher.errors import ConfigurationError

SETTINGS = """
CLOUD_FARM = {
    "default": {"ENGINE": "dummy"},
    "from_file": {"ENGINE": "dummy", "USER": "5"},
}
CLOUD_TIMEOUT = 7
"""


@pytest.mark.parametrize("variable", ["DISPATCHER_SETTINGS", "MIDDLEWARE_SETTINGS"])
def test_settings_file_named_by_the_environment(monkeypatch, tmp_path, variable):
    """The file named by DISPATCHER_SETTINGS (or the original MIDDLEWARE_SETTINGS) applies."""
    settings = tmp_path / "settings.py"
    settings.write_text(SETTINGS)
    monkeypatch.setenv(variable, str(settings))
    app = create_app(CHEAP_PASSWORD_HASH)
    assert app.config["CLOUD_TIMEOUT"] == 7
    client = token_client(app)
    names = [cloud["name"] for cloud in client.get("/api/v1/cloud").json["served_cloud"]]
    assert names == ["default", "from_file"]
    nodes = client.get("/api/v1/nodes/from_file").json["nodes"]
    assert [node["name"] for node in nodes] == [f"dummy-{i}" for i in range(5)]


def test_a_settings_file_that_is_missing_is_an_error(monkeypatch, tmp_path):
    """A settings file that is named but absent stops the start instead of being ignored."""
    monkeypatch.setenv("DISPATCHER_SETTINGS", str(tmp_path / "absent.py"))
    with pytest.raises(ConfigurationError, match="DISPATCHER_SETTINGS names .*absent.py"):
        create_app()


def test_environment_wins_over_the_file_and_the_argument_over_both(monkeypatch, tmp_path):
    """DATABASE_URL and DISPATCHER_SECRET_KEY beat the file; create_app's argument beats all."""
    settings = tmp_path / "settings.py"
    settings.write_text("SQLALCHEMY_DATABASE_URI = 'sqlite:///from-file.sqlite'\n")
    monkeypatch.setenv("DISPATCHER_SETTINGS", str(settings))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.sqlite'}")
    monkeypatch.setenv("DISPATCHER_SECRET_KEY", "secret-from-env")
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("from-env.sqlite")
    assert app.config["SECRET_KEY"] == "secret-from-env"
    assert create_app({"CLOUD_TIMEOUT": 3}).config["CLOUD_TIMEOUT"] == 3


def test_embedded_defaults_live_in_the_instance_folder(tmp_path):
    """With nothing configured: SQLite and a private secret key in the instance folder."""
    app = create_app()
    instance = tmp_path / "instance"
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{instance / 'dispatcher.sqlite'}"
    for setting, filename in [
        ("SECRET_KEY", "secret_key"),
        ("SECURITY_PASSWORD_SALT", "password_salt"),
    ]:
        secret_file = instance / filename
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert app.config[setting] == secret_file.read_text()
        assert len(app.config[setting]) >= 32
        assert create_app().config[setting] == app.config[setting]
    assert app.config["SECRET_KEY"] != app.config["SECURITY_PASSWORD_SALT"]
    assert sorted(path.name for path in instance.iterdir()) == ["password_salt", "secret_key"]


def test_default_farm_is_two_dummy_clouds():
    """The embedded default serves default and fake_driver on the Dummy driver."""
    body = token_client(create_app(CHEAP_PASSWORD_HASH)).get("/api/v1/cloud").json
    assert body["served_cloud"] == [
        {"name": "default", "type": "dummy", "host": None},
        {"name": "fake_driver", "type": "dummy", "host": None},
    ]


def test_production_wants_its_secret_from_the_environment(monkeypatch):
    """DISPATCHER_CONFIG=production never falls back to a generated secret."""
    monkeypatch.setenv("DISPATCHER_CONFIG", "production")
    with pytest.raises(ConfigurationError, match="DISPATCHER_SECRET_KEY"):
        create_app()
    monkeypatch.setenv("DISPATCHER_SECRET_KEY", "s3cret-from-the-environment")
    with pytest.raises(ConfigurationError, match="DISPATCHER_PASSWORD_SALT"):
        create_app()
    monkeypatch.setenv("DISPATCHER_PASSWORD_SALT", "salt-from-the-environment")
    app = create_app()
    assert app.config["SECRET_KEY"] == "s3cret-from-the-environment"
    assert app.config["SECURITY_PASSWORD_SALT"] == "salt-from-the-environment"


def test_unknown_configuration_name(monkeypatch):
    """A DISPATCHER_CONFIG that names no class is refused with the choices."""
    monkeypatch.setenv("DISPATCHER_CONFIG", "staging")
    with pytest.raises(ValueError, match="development, production"):
        create_app()


@pytest.fixture
def gunicorn_settings(monkeypatch):
    """dispatcher.gunicorn_config as gunicorn loads it, read afresh in the test's environment."""
    for variable in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY", "DISPATCHER_BIND"):
        monkeypatch.delenv(variable, raising=False)

    loaded = []

    def load():
        import dispatcher.gunicorn_config as module

        loaded.append(importlib.reload(module))
        return loaded[-1]

    yield load
    # The module set the variable itself, behind monkeypatch's back.
    for module in loaded:
        module.on_exit(server=None)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def test_gunicorn_kills_a_worker_only_well_after_the_cloud_timeout(
    monkeypatch, tmp_path, gunicorn_settings
):
    """The worker timeout follows CLOUD_TIMEOUT of the settings file: 4 calls' worth and 10 s."""
    settings = tmp_path / "settings.py"
    settings.write_text("CLOUD_TIMEOUT = 7\n")
    monkeypatch.setenv("DISPATCHER_SETTINGS", str(settings))
    monkeypatch.setenv("WEB_CONCURRENCY", "3")

    config = gunicorn_settings()

    assert (config.timeout, config.graceful_timeout) == (38, 38)
    assert config.workers == 3
    assert config.bind == "127.0.0.1:5070"
    assert "%(U)s" in config.access_log_format and "%(r)s" not in config.access_log_format
    assert "{x-request-id}o" in config.access_log_format


def test_gunicorn_metrics_folder_is_made_emptied_and_removed(gunicorn_settings):
    """Without PROMETHEUS_MULTIPROC_DIR a folder is made; a start empties it, an exit
    removes it."""
    config = gunicorn_settings()
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert folder.is_dir()
    (folder / "counter_123.db").write_bytes(b"stale")

    config.on_starting(server=None)
    assert list(folder.iterdir()) == []
    config.on_exit(server=None)

    assert not folder.exists()


def test_gunicorn_keeps_a_metrics_folder_the_environment_names(
    monkeypatch, tmp_path, gunicorn_settings
):
    """A folder named by PROMETHEUS_MULTIPROC_DIR is used and left in place at exit."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))

    config = gunicorn_settings()
    config.on_starting(server=None)
    config.on_exit(server=None)

    assert (tmp_path / "metrics").is_dir()


def test_the_database_remembers_its_secrets_by_fingerprint(make_app, sqlite_url):
    """The first app on a database records a fingerprint of each secret, never the secret;
    an app with another secret key or salt refuses to start, naming the variable."""
    secrets = {"SECRET_KEY": "the-key-of-this-database", "SECURITY_PASSWORD_SALT": "its-salt"}
    make_app(**secrets)  # the schema; its own create_app ran before the tables existed
    create_app({"SQLALCHEMY_DATABASE_URI": sqlite_url, **secrets})
    engine = sqlalchemy.create_engine(sqlite_url)
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text("SELECT * FROM secret_fingerprints")).all()
    engine.dispose()
    assert len(rows) == 2
    assert not any(secret in str(row) for row in rows for secret in secrets.values())
    create_app({"SQLALCHEMY_DATABASE_URI": sqlite_url, **secrets})  # the same: it starts
    for setting, variable in [
        ("SECRET_KEY", "DISPATCHER_SECRET_KEY"),
        ("SECURITY_PASSWORD_SALT", "DISPATCHER_PASSWORD_SALT"),
    ]:
        with pytest.raises(ConfigurationError, match=f"^{variable} .* differs from the one"):
            create_app({"SQLALCHEMY_DATABASE_URI": sqlite_url, **secrets, setting: "another"})


def test_a_database_without_the_schema_checks_nothing(sqlite_url):
    """Before `db upgrade` there is nothing to compare with: the app starts."""
    create_app({"SQLALCHEMY_DATABASE_URI": sqlite_url, "SECRET_KEY": "one"})
    create_app({"SQLALCHEMY_DATABASE_URI": sqlite_url, "SECRET_KEY": "another"})
