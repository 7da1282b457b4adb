"""Extension objects, unbound: ``create_app`` binds them to an app."""

from flask_security import Security
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
security = Security()


def init_app(app) -> None:
    """Bind the database to ``app``; ``auth.init_app`` binds ``security``."""
    db.init_app(app)
