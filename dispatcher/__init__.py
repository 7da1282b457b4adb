"""The dispatcher: one token-protected JSON API in front of a pool of clouds."""

import logging
import os
import secrets
from pathlib import Path

from flask import Config, Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import ENVIRONMENT_SETTINGS, config_class, settings_from_env
from .errors import ConfigurationError
from .jsonparsing import JSONProvider

SETTINGS_VARIABLES = ("DISPATCHER_SETTINGS", "MIDDLEWARE_SETTINGS")
# A checkout's settings file, beside wsgi.py; the wheel does not install it.
CHECKOUT_SETTINGS = "config.py"


def create_app(config: dict | None = None) -> Flask:
    """Build the application: configuration in layers, extensions, clouds, API.

    ``config`` wins over every other layer (the tests use it).

    :raises ConfigurationError: the configuration cannot work (a bad CLOUD_FARM, a
        missing secret in production, secrets other than the database was set up with).
    """
    app = Flask(
        __name__,
        instance_path=os.environ.get("DISPATCHER_INSTANCE_PATH") or None,
        instance_relative_config=True,
        static_folder=None,  # no /static route: the docs page's files have their own view
    )
    # Every path is answered by a route or the 404 envelope: Werkzeug's redirects for a
    # missing or doubled slash are HTML pages that no error handler sees.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    # Before Flask-Security-Too, which builds its provider on this class.
    app.json_provider_class = JSONProvider
    app.json = JSONProvider(app)
    app.config.update(load_config(config, root_path=app.root_path))
    _fill_instance_defaults(app)
    _configure_logging(app)
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

    from . import (
        api,
        auth,
        bookkeeping,
        cli,
        clouds,
        console,
        errors,
        extensions,
        fingerprints,
        leases,
        pools,
        quotas,
        reconcile,
        requestlog,
        requests,
        tagging,
        usage,
        webhooks,
    )

    # requestlog first: its request id is there before any other hook can fail.
    parts = (
        requestlog,
        extensions,
        auth,
        clouds,
        bookkeeping,
        webhooks,
        pools,
        tagging,
        usage,
        requests,
        leases,
        quotas,
        reconcile,
        errors,
        api,
        console,
        cli,
    )
    for part in parts:
        part.init_app(app)
    # After Flask-Security-Too, which installs a JSON provider of its own.
    app.json.sort_keys = False  # "status" first in every answer, as the original's
    with app.app_context():
        fingerprints.check(app.config)
    return app


def load_config(config: dict | None = None, root_path: str | None = None) -> Config:
    """The settings in their layers, without building an app (gunicorn's config reads it).

    The class ``DISPATCHER_CONFIG`` names, the settings file (``settings_file()``: the
    one ``DISPATCHER_SETTINGS`` names, else a checkout's config.py), the environment,
    then ``config``.
    """
    settings = Config(root_path or os.path.dirname(os.path.abspath(__file__)))
    settings.from_object(config_class())
    source = _settings_source()
    if source is not None:
        _read_settings_file(settings, *source)
    settings.update(settings_from_env())
    settings.update(config or {})
    return settings


def checkout() -> Path | None:
    """The checkout the package runs from (the folder of dispatcher/, wsgi.py and
    config.py), or None for an installed package.

    Flask's own test, the one that puts the instance folder in a checkout's ``instance``
    and an installed package's under its prefix (``<venv>/var/dispatcher-instance``):
    the package is imported from neither the interpreter's prefix nor a site-packages.
    """
    folder = Path(__file__).resolve().parent.parent
    found = Path(Flask(__name__, static_folder=None).auto_find_instance_path()).resolve()
    return folder if found == folder / "instance" else None


def settings_file() -> Path | None:
    """The settings file this process reads: the one ``DISPATCHER_SETTINGS`` (or the
    original's ``MIDDLEWARE_SETTINGS``) names, else the checkout's config.py where the
    package runs from a checkout that has one; None for neither."""
    source = _settings_source()
    return None if source is None else source[1]


def _settings_source() -> tuple[str, Path] | None:
    """How the settings file is named in messages, and its path."""
    for variable in SETTINGS_VARIABLES:
        path = os.environ.get(variable)
        if path:
            return f"{variable} names", Path(os.path.abspath(path))
    folder = checkout()
    if folder is not None and (folder / CHECKOUT_SETTINGS).is_file():
        return "the checkout's settings file", folder / CHECKOUT_SETTINGS
    return None


def _read_settings_file(settings: Config, source: str, path: Path) -> None:
    """Read the settings file at ``path``; ``source`` names it in the messages.

    :raises ConfigurationError: it is missing, unreadable or not valid Python.
    """
    try:
        settings.from_pyfile(path)
    except OSError as exc:
        raise ConfigurationError(f"{source} {path}: {exc.strerror}") from None
    except SyntaxError as exc:
        raise ConfigurationError(f"{source} {path}: line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # the file is Python: whatever it raises is its fault
        raise ConfigurationError(f"{source} {path}: {type(exc).__name__}: {exc}") from None


# Secrets the embedded default generates into the instance folder when neither the
# environment nor a settings file gives them: setting -> file name.
INSTANCE_SECRETS = {"SECRET_KEY": "secret_key", "SECURITY_PASSWORD_SALT": "password_salt"}


def _fill_instance_defaults(app: Flask) -> None:
    """The embedded defaults that live in the instance folder: database and secrets."""
    instance = Path(app.instance_path)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        _make_private_folder(instance)
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'dispatcher.sqlite'}"
    for setting, filename in INSTANCE_SECRETS.items():
        if app.config.get(setting):
            continue
        if app.config.get("REQUIRE_SECRETS_FROM_ENV"):
            variable = next(var for var, key in ENVIRONMENT_SETTINGS.items() if key == setting)
            raise ConfigurationError(f"{variable} must be set in production")
        app.config[setting] = _instance_secret(instance / filename)


def _make_private_folder(folder: Path) -> None:
    # The folder holds the database (password hashes) and the secrets: its owner's only.
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def _instance_secret(path: Path) -> str:
    """A random secret kept in the instance folder, readable by its owner only."""
    if path.exists():
        return path.read_text().strip()
    _make_private_folder(path.parent)
    # Written aside, then linked into place: workers starting together agree on
    # whichever secret is linked first, and none reads a half-written file.
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


def _configure_logging(app: Flask) -> None:
    """The dispatcher's loggers: LOG_LEVEL, and a handler in LOG_FORMAT on standard error.

    Where the host program configured logging itself (a root handler), records go
    there instead, still with their request id.
    """
    from .requestlog import formatter, install_record_factory

    install_record_factory()  # before any record our handler formats
    logger = logging.getLogger(__name__)
    logger.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    for handler in [h for h in logger.handlers if getattr(h, "dispatcher", False)]:
        logger.removeHandler(handler)
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.dispatcher = True  # ours, replaced by the next app's
        handler.setFormatter(formatter(app.config.get("LOG_FORMAT", "plain")))
        logger.addHandler(handler)
