"""The baseline of benchmarks (a) and (e): a bare Flask app that answers the dispatcher's
answer verbatim.

``BENCH_BARE_BODY`` names a file holding a body the dispatcher answered: to
``GET /api/v1/nodes/fake_driver`` in (a), to an assign from a warm pool in (e). This app
serves those bytes at that path, and to any ``PUT /api/v1/vm/action/...`` (an assign or a
release), with the same content type, and checks nothing: no token, no database, no
cloud.
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


@app.put("/api/v1/vm/action/<path:_action>")
def action(_action):
    return Response(BODY, mimetype="application/json")
