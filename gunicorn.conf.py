"""gunicorn reads this file from the folder it starts in: the dispatcher's settings.

They live in dispatcher/gunicorn_config.py, which an installed package has too:
``gunicorn -c python:dispatcher.gunicorn_config dispatcher.wsgi:app``.
"""

from dispatcher.gunicorn_config import *  # noqa: F403 (settings and server hooks)
