"""Schemathesis against a live `dispatcher run`: no 5xx answer, every answer as documented.

Run alone: ``pytest tests/test_fuzz.py``; each run prints its number of requests.
"""

import itertools
import subprocess
import time
from collections import Counter

import pytest
import requests
import schemathesis
from helpers import ADMIN_PASSWORD, DISPATCHER, Server
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

# Each operation on SQLite, the full run: the deterministic cases of schemathesis' coverage
# phase (boundaries, wrong types, methods the document lacks: about 2000 requests), then
# this many cases of its fuzzing phase (10: 2400 requests in all, 36 s; 20 took 50 s).
MAX_EXAMPLES = 10
# An operation that another one repeats gets a few fuzzing cases and no coverage phase: a
# path without `/{cloud}` is the view of the path with it on the default cloud (which is
# drawn there too), with the same schemas, and /api/v2's listings are v1's.
REPEAT_EXAMPLES = 5
# On PostgreSQL, what differs from SQLite is the text the database takes (the NUL and the
# overlong text of docs/testing.md): only the operations whose input reaches the database,
# with more cases on POST /auth: with this seed the NUL in a username that PostgreSQL
# refused with a 500 comes at its 136th case.
DATABASE_OPERATIONS = r"/auth$|/vm/(action|history|status)(/|$)"
POSTGRESQL_EXAMPLES = 30
AUTH_EXAMPLES = 150
SEED = 20240601
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# DELETE /auth revokes every token of its caller: it runs with a second user's token,
# fresh for each case, so that the admin token of every other operation stays valid.
REVOKING = "DELETE /api/v1/auth"
# The seeded generator draws the same few Idempotency-Keys again and again: each case gets
# its own (a number before the drawn key, which keeps a bad key bad), or most changes would
# be the 422 of a key used with another body, and their bodies never reach the checks.
CASE_NUMBERS = itertools.count()
REVOKER = ("fuzz-revoker", "fuzz-revoker-password")
# Values the Dummy clouds know, drawn most of the time instead of random text, so that
# cases get past "unknown cloud" and "no such node" into the operations themselves.
DICTIONARIES = {
    "clouds": ["default", "fake_driver"],
    "listings": ["nodes", "images", "flavors", "sizes", "tenants", "locations", "keypairs"],
    "ids": ["1", "2", "3", "4", "dummy-1", "dummy-2", "dummy-3"],
}
PARAMETERS = {
    "path.cloud": "clouds",
    "path.action": "listings",
    "path.node_id": "ids",
    "body.image": "ids",
    "body.size": "ids",
    "body.location": "ids",
    "body.node": "ids",
    "body.hostname": "ids",
}


class Run:
    """The live server of a run, its tokens, and what it answered."""

    def __init__(self, server: Server, token: str):
        self.server = server
        self.token = token
        self.statuses = Counter()
        self.session = requests.Session()
        # Loopback only: no proxy or .netrc to look up in the environment for each request.
        self.session.trust_env = False

    def revoker_token(self) -> str:
        """A fresh token of the second user, for a case of DELETE /auth."""
        username, password = REVOKER
        response = self.session.post(
            f"{self.server.base}/auth",
            json={"username": username, "password": password},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()["token"]


def _show(request, line: str) -> None:
    """Print ``line`` past pytest's output capture."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{line}")


@pytest.fixture
def run(any_database_url, tmp_path, request):
    """A `dispatcher run` on SQLite or PostgreSQL with the admin and a second user."""
    server = Server(
        tmp_path / "instance",
        DISPATCHER_ADMIN_PASSWORD=ADMIN_PASSWORD,
        DATABASE_URL=any_database_url,
    )
    username, password = REVOKER
    subprocess.run(
        [str(DISPATCHER), "users", "create", username, "--role", "agent", "--password", password],
        env=server.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    response = requests.post(
        f"{server.base}/auth", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
    )
    assert response.status_code == 200
    started = time.monotonic()
    current = Run(server, response.json()["token"])
    yield current
    seconds = time.monotonic() - started
    # The run only meant something if the admin token outlived it.
    still_valid = current.session.put(
        f"{server.base}/test/start", headers={"X-Auth-Token": current.token}, timeout=10
    )
    current.session.close()
    server.stop()
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(current.statuses.items()))
    _show(
        request,
        f"schemathesis on {request.node.callspec.id}: {current.statuses.total()} requests"
        f" in {seconds:.0f} s ({statuses})",
    )
    assert still_valid.status_code == 200


def repeats(document: dict) -> list[str]:
    """The operations that another operation repeats (see REPEAT_EXAMPLES)."""
    paths = document["paths"]
    return [
        f"{method.upper()} {path}"
        for path, item in paths.items()
        for method in item
        if method != "parameters"
        and (path.startswith("/api/v2/") or method in paths.get(f"{path}/{{cloud}}", {}))
    ]


@pytest.fixture
def api_schema(run, request):
    """The document the live server serves, with a fixed seed and a bound on the examples."""
    if not hasattr(request.node, "_nodeid"):
        # schemathesis' lazy schema renames the test per operation through the private
        # `_nodeid`, which pytest 9.2 no longer has; only the report's names depend on it.
        request.node._nodeid = request.node.nodeid
    url = f"{run.server.base}/openapi.json"
    document = run.session.get(url, timeout=10).json()
    postgresql = request.node.callspec.params["any_database_url"] == "postgresql"
    operations = [
        {
            "include-name": repeats(document),
            "generation": {"max-examples": REPEAT_EXAMPLES},
            "phases": {"coverage": {"enabled": False}},
        }
    ]
    if postgresql:
        # Off: every operation whose input does not reach the database.
        operations.append({"exclude-path-regex": DATABASE_OPERATIONS, "enabled": False})
        operations.append(
            {"include-path-regex": r"/auth$", "generation": {"max-examples": AUTH_EXAMPLES}}
        )
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": POSTGRESQL_EXAMPLES if postgresql else MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # The token is ours: a generated auth_token would take precedence over it.
                "with-security-parameters": False,
            },
            # The v1 contract's 501s: a method a view lacks, what the Dummy driver lacks.
            "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", 501]}},
            "dictionaries": {name: {"values": values} for name, values in DICTIONARIES.items()},
            "parameters": {
                key: {"dictionary": name, "probability": 0.8} for key, name in PARAMETERS.items()
            },
            "operations": operations,
        }
    )
    return schemathesis.openapi.from_url(url, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_answers_as_documented(case, run):
    """Every operation, with valid and invalid input, answers below 500 and as documented."""
    token = run.revoker_token() if case.operation.label == REVOKING else run.token
    if isinstance(case.body, dict):
        # The document lists auth_token among the body's keys (the v1 contract's token in a
        # JSON body): a generated one would take precedence over the header's token and
        # turn the case into a 401 that never reaches the operation (372 of the SQLite run's
        # cases were, most of them in the coverage phase of POST /requests, PATCH /pools/{name}
        # and PUT /quotas).
        case.body.pop("auth_token", None)
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = f"{next(CASE_NUMBERS)}-{case.headers['Idempotency-Key']}"
    response = case.call(session=run.session, headers={"X-Auth-Token": token}, timeout=30)
    run.statuses[response.status_code] += 1
    case.validate_response(response, checks=CHECKS)
