"""The checkout's WSGI entry point: ``gunicorn wsgi:app`` serves ``dispatcher.wsgi:app``.

Not installed with the package; an installed dispatcher is served as
``gunicorn dispatcher.wsgi:app``.
"""

from dispatcher.wsgi import app  # noqa: F401
