"""Extension objects, unbound: ``create_app`` binds them to an app."""

from pathlib import Path

from flask_migrate import Migrate
from flask_security import Security
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Constraint names as PostgreSQL gives them by default, so that the databases made
# before the migrations existed and those made by them agree, and a migration can
# name a constraint on SQLite too.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}
MIGRATIONS = Path(__file__).with_name("migrations")

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
security = Security()
migrate = Migrate(directory=str(MIGRATIONS), render_as_batch=True, compare_type=True)


def init_app(app) -> None:
    """Bind the database and migrations; ``auth.init_app`` binds ``security``."""
    db.init_app(app)
    migrate.init_app(app, db)
