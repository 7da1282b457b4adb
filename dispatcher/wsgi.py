"""The WSGI application: ``gunicorn dispatcher.wsgi:app``."""

from dispatcher import auth, create_app

app = create_app()
# Each worker keeps the tokens it verified while it hears every revocation (PostgreSQL).
auth.serve(app)
