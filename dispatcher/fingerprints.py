"""The secrets a database was set up with, checked by their fingerprints at every start.

Tokens are signed with SECRET_KEY and passwords hashed with SECURITY_PASSWORD_SALT: a
process started with other values (a second shell that generated its own) would refuse
every login with no word why. The first process on a database records a fingerprint of
each secret (a hash, never the secret); every later one compares its own and refuses to
start on a difference.
"""

import hashlib
from pathlib import Path

from sqlalchemy import make_url, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from .errors import ConfigurationError
from .extensions import db
from .models import SecretFingerprint

# setting -> the environment variable that sets it in production
SECRETS = {
    "SECRET_KEY": "DISPATCHER_SECRET_KEY",
    "SECURITY_PASSWORD_SALT": "DISPATCHER_PASSWORD_SALT",
}


def fingerprint(name: str, secret: str) -> str:
    """A fingerprint of ``secret`` that tells nothing of it."""
    return hashlib.sha256(f"dispatcher secret {name}\0{secret}".encode()).hexdigest()


def _exists(url: str) -> bool:
    # Connecting to a SQLite file that is not there makes it: there is nothing to check.
    database = make_url(url)
    if not database.drivername.startswith("sqlite") or database.database in (None, "", ":memory:"):
        return True
    return Path(database.database).exists()


def check(config) -> None:
    """Record the fingerprints of the secrets in ``config`` on a database that has none;
    refuse secrets whose fingerprints differ. Needs an app context.

    A database without the table (not yet upgraded) or not answering is not checked:
    the service starts, and checks the next time.

    :raises ConfigurationError: a secret differs from the one the database was set up with.
    """
    if not _exists(config["SQLALCHEMY_DATABASE_URI"]):
        return
    try:
        known = dict(
            db.session.execute(select(SecretFingerprint.name, SecretFingerprint.fingerprint)).all()
        )
    except DBAPIError:
        db.session.rollback()
        return
    for name, variable in SECRETS.items():
        mine = fingerprint(name, str(config[name]))
        if name not in known:
            db.session.add(SecretFingerprint(name=name, fingerprint=mine))
        elif known[name] != mine:
            db.session.rollback()
            raise ConfigurationError(
                f"{variable} ({name}) differs from the one this database was set up with: "
                "start every process with the same secrets (one env file, docs/deployment.md)"
            )
    try:
        db.session.commit()
    except IntegrityError:  # another process recorded them this very moment: compare
        db.session.rollback()
        check(config)
