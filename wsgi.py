"""WSGI entry point: ``gunicorn wsgi:app``."""

from dispatcher import create_app

app = create_app()
