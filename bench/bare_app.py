"""The baseline of benchmark (a): a bare Flask app that answers the dispatcher's listing verbatim.

``BENCH_BARE_BODY`` names a file holding the body the dispatcher answered to
``GET /api/v1/nodes/fake_driver``; this app serves those bytes at the same path, with the
same content type, and checks nothing: no token, no database, no cloud.
"""

import os
from pathlib import Path

from flask import Flask, Response

BODY = Path(os.environ["BENCH_BARE_BODY"]).read_bytes()

app = Flask(__name__)


@app.get("/api/v1/")
def home():
    """What the benchmark polls until the server is up."""
    return {"status": "ok"}


@app.get("/api/v1/nodes/fake_driver")
def nodes():
    return Response(BODY, mimetype="application/json")
