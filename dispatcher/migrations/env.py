"""Alembic's environment: the dispatcher's database and models, through flask-migrate."""

from alembic import context
from flask import current_app

migrate = current_app.extensions["migrate"]


def skip_empty_autogenerate(migration_context, revision, directives):
    """`dispatcher db migrate` writes no revision when the models did not change."""
    if (
        getattr(context.config.cmd_opts, "autogenerate", False)
        and directives[0].upgrade_ops.is_empty()
    ):
        directives[:] = []


def run_offline() -> None:
    """`--sql`: print the SQL instead of running it."""
    context.configure(
        url=migrate.db.engine.url, target_metadata=migrate.db.metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    options = {"process_revision_directives": skip_empty_autogenerate, **migrate.configure_args}
    with migrate.db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=migrate.db.metadata, **options)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
