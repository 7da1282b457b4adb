"""Extension objects, unbound: ``create_app`` binds them to an app."""

from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()


def init_app(app) -> None:
    """Bind the extensions to ``app``."""
    db.init_app(app)
