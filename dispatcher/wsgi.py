"""The WSGI application: ``gunicorn dispatcher.wsgi:app``."""

from dispatcher import create_app

app = create_app()
