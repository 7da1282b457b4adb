"""Configuration in layers: class, settings file, environment, then the factory's argument."""

import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
from conftest import CHEAP_PASSWORD_HASH, token_client
from flask import Flask
from helpers import CHECKOUT_SETTINGS

import dispatcher
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


# -- the checkout's config.py -------------------------------------------------------------

CHECKOUT = CHECKOUT_SETTINGS.parent


def test_the_checkouts_config_py_gives_the_quick_starts_two_dummy_clouds(monkeypatch):
    """The top-level config.py, named by DISPATCHER_SETTINGS, serves default and fake_driver
    on the Dummy driver, as the package's defaults do; it sets nothing else live."""
    monkeypatch.setenv("DISPATCHER_SETTINGS", str(CHECKOUT_SETTINGS))
    assert dispatcher.settings_file() == CHECKOUT_SETTINGS
    app = create_app(CHEAP_PASSWORD_HASH)
    body = token_client(app).get("/api/v1/cloud").json
    assert body["served_cloud"] == [
        {"name": "default", "type": "dummy", "host": None},
        {"name": "fake_driver", "type": "dummy", "host": None},
    ]
    live = {}
    exec(compile(CHECKOUT_SETTINGS.read_text(), str(CHECKOUT_SETTINGS), "exec"), live)  # noqa: S102
    assert sorted(name for name in live if name.isupper()) == ["CLOUD_FARM"]


def uncommented(text: str) -> str:
    """config.py with its commented examples made live: every commented line that is code
    (a dict's key or its end, or NAME = ...), its prose left as it is."""
    code = re.compile(r'^(\s*)# (\s*(?:"|\}|\]|[A-Z_]+ = ).*)$')
    return "\n".join(code.sub(r"\1\2", line) for line in text.splitlines())


def test_the_examples_of_config_py_start_when_uncommented(monkeypatch, tmp_path):
    """config.py's commented OpenStack and EC2 clouds, warm pool and leases, made live, are
    a configuration that starts (their secrets from the environment, never in the file)."""
    settings = tmp_path / "config.py"
    settings.write_text(uncommented(CHECKOUT_SETTINGS.read_text()))
    for variable in ("OS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(variable, f"{variable.lower()}-from-the-environment")
    monkeypatch.setenv("DISPATCHER_SETTINGS", str(settings))
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    farm = app.config["CLOUD_FARM"]
    assert {name: cloud["ENGINE"] for name, cloud in farm.items()} == {
        "default": "dummy",
        "fake_driver": "dummy",
        "openstack": "openstack",
        "aws": "ec2",
    }
    assert "from-the-environment" not in settings.read_text()
    assert list(app.config["POOLS"]) == ["web"]
    assert (app.config["DEFAULT_LEASE"], app.config["MAX_LEASE"]) == (8 * 3600, 7 * 24 * 3600)


def test_this_checkout_is_one_and_reads_its_config_py():
    """The tests run in a checkout: Flask puts its instance folder there, and without
    DISPATCHER_SETTINGS its config.py is the settings file (a test of the one helper over
    Flask's detection, which fails if Flask's changes)."""
    assert dispatcher.checkout() == CHECKOUT
    automatic = Flask("dispatcher", static_folder=None).auto_find_instance_path()
    assert Path(automatic).resolve() == CHECKOUT / "instance"
    assert dispatcher.settings_file() == CHECKOUT_SETTINGS


SHOW_SETTINGS = """
import json, dispatcher
try:
    app = dispatcher.create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    print(json.dumps([dispatcher.__file__, sorted(app.config["CLOUD_FARM"]),
                      app.config["CLOUD_TIMEOUT"]]))
except dispatcher.errors.ConfigurationError as exc:
    print(json.dumps(str(exc)))
"""


def settings_seen(folder: Path, tmp_path: Path, **env):
    """What an app of the dispatcher package copied into ``folder`` reads, in a process
    started there: [its package's file, its clouds, CLOUD_TIMEOUT], or the error's line."""
    environ = {key: value for key, value in os.environ.items() if "SETTINGS" not in key}
    environ.update(PYTHONPATH=str(folder), DISPATCHER_INSTANCE_PATH=str(tmp_path / "i"), **env)
    done = subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_a_checkout_reads_its_config_py_and_an_installed_package_never(tmp_path):
    """The package in a checkout reads the config.py beside it, unless DISPATCHER_SETTINGS
    names another file; a config.py in a site-packages (some other distribution's module)
    is never read; a config.py that is not Python is one line naming it."""
    checkout = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(CHECKOUT / "dispatcher", checkout / "dispatcher", ignore=ignore)
    farm = {"default": {"ENGINE": "dummy"}, "from_checkout": {"ENGINE": "dummy"}}
    (checkout / "config.py").write_text(f"CLOUD_FARM = {farm!r}\nCLOUD_TIMEOUT = 9\n")
    other = tmp_path / "other.py"
    other.write_text("CLOUD_TIMEOUT = 11\n")

    package = str(checkout / "dispatcher" / "__init__.py")
    assert settings_seen(checkout, tmp_path) == [package, ["default", "from_checkout"], 9]
    seen = settings_seen(checkout, tmp_path, DISPATCHER_SETTINGS=str(other))
    assert seen == [package, ["default", "fake_driver"], 11]

    (checkout / "config.py").write_text("CLOUD_FARM = {\n")
    assert settings_seen(checkout, tmp_path) == (
        f"the checkout's settings file {checkout / 'config.py'}: line 1: '{{' was never closed"
    )

    site_packages = tmp_path / "prefix" / "lib" / "python3" / "site-packages"
    shutil.copytree(checkout / "dispatcher", site_packages / "dispatcher", ignore=ignore)
    (site_packages / "config.py").write_text("CLOUD_TIMEOUT = 13\n")
    installed = str(site_packages / "dispatcher" / "__init__.py")
    assert settings_seen(site_packages, tmp_path) == [installed, ["default", "fake_driver"], 30]


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
