"""gunicorn's settings for the dispatcher: ``gunicorn -c python:dispatcher.gunicorn_config``.

The checkout's ``gunicorn.conf.py`` imports this module, so that a plain ``gunicorn
dispatcher.wsgi:app`` in a checkout and the command above from an installed package agree.
Command-line options and ``GUNICORN_CMD_ARGS`` win over everything here.
"""

import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

from dispatcher import create_app, load_config
from dispatcher.errors import ConfigurationError
from dispatcher.extensions import db


def _refuse(error: ConfigurationError):
    """Stop gunicorn with one line naming what is wrong, not a traceback per worker."""
    print(f"dispatcher: {error}", file=sys.stderr)
    sys.exit(1)


try:
    _settings = load_config()
except ConfigurationError as error:
    _refuse(error)

# Where to listen: loopback, behind a TLS proxy (docs/deployment.md).
bind = os.environ.get("DISPATCHER_BIND", "127.0.0.1:5070")

# Sync workers: one request at a time each, in a process of its own. A request waits
# on clouds, so more workers than cores pay off; WEB_CONCURRENCY is gunicorn's own
# variable for the count.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count() + 1))

# The longest request makes a few cloud calls in a row (starting a VM: the image, the
# sizes, the creation), each allowed CLOUD_TIMEOUT seconds: a worker is killed only
# well after the dispatcher itself has answered 504.
timeout = 4 * int(_settings["CLOUD_TIMEOUT"]) + 10
graceful_timeout = timeout
# Behind a proxy that keeps connections open: a little longer than gunicorn's 2 s.
keepalive = 5

# One access line per request with the request id the dispatcher answers in
# X-Request-ID. %(U)s is the path without the query string: a ?auth_token= never
# reaches the log.
accesslog = "-"
access_log_format = '%(h)s %({x-request-id}o)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
# No token in any line gunicorn logs (a malformed request line is logged whole), and
# a request gunicorn cannot read is answered in the JSON envelope, not a page that
# repeats it.
logger_class = "dispatcher.serving.RedactingLogger"
worker_class = "dispatcher.serving.EnvelopeWorker"

# gunicorn's control socket (gunicornc) sits at one path per user by default, shared
# by every gunicorn that user runs: off, unless DISPATCHER_CONTROL_SOCKET gives this
# instance a path of its own.
control_socket_disable = not os.environ.get("DISPATCHER_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["DISPATCHER_CONTROL_SOCKET"]

# /metrics adds up what every worker counted: prometheus_client keeps each worker's
# figures in files of this folder. It must be empty when the server starts.
_own_metrics_folder = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_folder:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="dispatcher-metrics-")


def on_starting(server):
    """Check that the app can start (its settings, its secrets against the database's),
    once in the master; forget the figures of an earlier server in the metrics folder."""
    try:
        app = create_app()
    except ConfigurationError as error:
        on_exit(server)
        _refuse(error)
    with app.app_context():
        db.engine.dispose()  # no connection of the master's reaches a worker
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def on_exit(server):
    """Remove the metrics folder made above; one the environment named stays."""
    if _own_metrics_folder:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    """Drop the live figures (gauges) of a worker that is gone; its counts stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
