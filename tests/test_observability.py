"""Request ids, the request log, /metrics and /api/v1/health, on the Dummy driver."""

import ast
import io
import json
import logging
import re
import time
import uuid
from pathlib import Path

import pytest
from conftest import (
    DUMMY_FARM,
    ERROR_KEYS,
    assert_error,
    cloud_calls,
    ec2_cloud,
    metric,
    token_client,
)
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import auth, create_app, metrics, pools, requestlog
from dispatcher.extensions import db
from dispatcher.models import AuditEntry
from dispatcher.worker import pool_pass

REQUEST_FIELDS = {
    "request_id",
    "caller",
    "method",
    "endpoint",
    "path",
    "status",
    "duration_ms",
    "remote",
}
ASSIGN = "/api/v1/vm/action/assign/fake_driver"
RELEASE = "/api/v1/vm/action/release/fake_driver"
PASSWORD = "s3cret-horse-battery-staple"


def request_records(caplog):
    return [record for record in caplog.records if record.name == "dispatcher.requests"]


def only_request_record(caplog):
    records = request_records(caplog)
    assert len(records) == 1, [record.getMessage() for record in records]
    return records[0]


def fields(record):
    return {field: getattr(record, field) for field in REQUEST_FIELDS}


def is_fresh_id(value):
    """A request id the dispatcher made: a uuid4 in 32 lowercase hex digits."""
    return re.fullmatch(r"[0-9a-f]{32}", value) is not None and uuid.UUID(value).version == 4


def formatted(record):
    """The record as the plain and the JSON formatter write it (with its request id)."""
    return [requestlog.formatter(kind).format(record) for kind in requestlog.FORMATS]


def requests_counted(endpoint, status, method="GET"):
    return metric("dispatcher_http_requests_total", endpoint=endpoint, method=method, status=status)


def assignments_counted(outcome, action="assign", cloud="fake_driver"):
    return metric("dispatcher_assignments_total", cloud=cloud, action=action, outcome=outcome)


def assign(client, user="zeppolo", **headers):
    return client.put(ASSIGN, json={"node": "1", "user": user, "vm_type": "app"}, headers=headers)


@pytest.fixture
def refusing_app(make_app, refusing_port):
    """Clouds `default` (Dummy) and `bad` (EC2 on a port where connections are refused)."""
    return make_app(CLOUD_FARM={"default": {"ENGINE": "dummy"}, "bad": ec2_cloud(refusing_port)})


@pytest.fixture
def own_handler(make_app):
    """Build an app where the host configured no logging: the dispatcher's own handler,
    writing into a StringIO; removed after the test."""
    logger = logging.getLogger("dispatcher")
    before = list(logger.handlers)
    root = logging.getLogger()

    def make(**config):
        saved = list(root.handlers)
        root.handlers.clear()
        try:
            app = make_app(**config)
        finally:
            root.handlers[:] = saved
        added = [handler for handler in logger.handlers if handler not in before]
        assert len(added) == 1
        stream = io.StringIO()
        added[0].setStream(stream)
        return app, stream

    yield make
    for handler in [handler for handler in logger.handlers if handler not in before]:
        logger.removeHandler(handler)


# Request ids


@pytest.mark.parametrize(
    "request_id",
    ["abc", "trace-42", "a.b_c:d@e/f+g=h-i", "0" * 128, "X" * 128],
)
def test_valid_request_id_is_kept_and_returned(anonymous, caplog, request_id):
    """An X-Request-ID of up to 128 allowed characters comes back as sent, and is logged."""
    response = anonymous.get("/api/v1/", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id
    assert only_request_record(caplog).request_id == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "has space",
        "line\nbreak",
        "carriage\rreturn",
        "tab\there",
        '"quoted"',
        "x" * 129,
        "x" * 200,
        "caf\xe9",
        "",
    ],
)
def test_invalid_request_id_is_replaced(anonymous, caplog, request_id):
    """An X-Request-ID with a space, a line break, or too long, is replaced by a new uuid4;
    the log line carries the new one, never the one sent."""
    response = anonymous.get("/api/v1/", environ_overrides={"HTTP_X_REQUEST_ID": request_id})
    assert response.status_code == 200
    answered = response.headers["X-Request-ID"]
    assert answered != request_id
    assert is_fresh_id(answered)
    record = only_request_record(caplog)
    assert record.request_id == answered
    if request_id:
        assert all(request_id not in line for line in formatted(record))


def test_missing_request_id_gets_a_new_one_each_time(anonymous, caplog):
    """Without X-Request-ID every answer carries a new uuid4, the one its log line has."""
    answers = [anonymous.get("/api/v1/").headers["X-Request-ID"] for _ in range(3)]
    assert all(is_fresh_id(answer) for answer in answers)
    assert len(set(answers)) == 3
    assert [record.request_id for record in request_records(caplog)] == answers


def test_error_answers_carry_a_request_id_too(client, anonymous):
    """401, 404, 400 and 501 answers carry X-Request-ID, the client's own where valid."""
    for response in (
        anonymous.get("/api/v1/nodes", headers={"X-Request-ID": "e-401"}),
        client.get("/nowhere", headers={"X-Request-ID": "e-404"}),
        client.get("/api/v1/volcanoes", headers={"X-Request-ID": "e-400"}),
        client.delete("/api/v1/cloud", headers={"X-Request-ID": "e-501"}),
    ):
        assert response.headers["X-Request-ID"] == f"e-{response.status_code}"


# The request log


def test_authenticated_request_logs_one_line_with_its_fields(client, caplog):
    """A listing logs one line: id, the token's user, method, endpoint, path without the
    query, status, duration and client address."""
    caplog.clear()
    response = client.get("/api/v1/nodes/fake_driver?limit=1", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 200
    record = only_request_record(caplog)
    assert record.levelno == logging.INFO
    values = fields(record)
    duration = values.pop("duration_ms")
    assert values == {
        "request_id": "r-1",
        "caller": "tester",
        "method": "GET",
        "endpoint": "api_v1.listing",
        "path": "/api/v1/nodes/fake_driver",
        "status": 200,
        "remote": "127.0.0.1",
    }
    assert isinstance(duration, float) and duration >= 0
    assert record.getMessage() == (
        "caller=tester method=GET endpoint=api_v1.listing path=/api/v1/nodes/fake_driver"
        f" status=200 duration_ms={duration} remote=127.0.0.1"
    )


def test_public_request_logs_caller_dash(anonymous, caplog):
    """A request without a token logs caller "-"."""
    anonymous.get("/api/v1/", headers={"X-Request-ID": "pub"})
    values = fields(only_request_record(caplog))
    assert (values["caller"], values["endpoint"], values["path"], values["status"]) == (
        "-",
        "api_v1.home",
        "/api/v1/",
        200,
    )


def test_every_request_logs_exactly_one_line(refusing_app, caplog):
    """Answers of every kind (200, 401, 403, 404, 400, 501, 502, /metrics) log one line each,
    in order, with the answer's id and status; no route matched (404, 501): endpoint
    "unmatched", as in the metrics."""
    client = token_client(refusing_app)
    anonymous = refusing_app.test_client()
    caplog.clear()
    responses = [
        anonymous.get("/api/v1/"),
        client.get("/api/v1/nodes"),
        anonymous.get("/api/v1/nodes"),
        anonymous.post("/api/v1/auth", json={"username": "tester", "password": "not it"}),
        client.get("/nowhere?x=1"),
        client.get("/api/v1/volcanoes"),
        client.delete("/api/v1/cloud"),
        client.get("/api/v1/nodes/bad"),
        anonymous.get("/metrics"),
        anonymous.get("/api/v1/health"),
    ]
    records = request_records(caplog)
    assert [(r.request_id, r.status) for r in records] == [
        (response.headers["X-Request-ID"], response.status_code) for response in responses
    ]
    assert [r.status for r in records] == [200, 200, 401, 403, 404, 400, 501, 502, 200, 200]
    callers = ["-", "tester", "-", "-", "tester", "tester", "tester", "tester", "-", "-"]
    assert [r.caller for r in records] == callers
    assert [r.endpoint for r in records] == [
        "api_v1.home",
        "api_v1.listing",
        "api_v1.listing",
        "api_v1.auth",
        "unmatched",
        "api_v1.listing",
        "unmatched",
        "api_v1.listing",
        "metrics",
        "api_v1.health",
    ]
    assert records[4].path == "/nowhere"


def test_token_in_the_query_logs_its_user_but_never_the_token(app, caplog):
    """?auth_token= identifies the caller in the log; the token and the login's password
    appear in no record, raw or formatted plain or JSON, at any level."""
    with app.app_context():
        auth.create_user("alice", PASSWORD, roles=("agent",))
    logging.getLogger("dispatcher").setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    anonymous = app.test_client()
    caplog.clear()
    login = anonymous.post("/api/v1/auth", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    token = login.json["token"]
    wrong = PASSWORD + "-wrong"
    refused = anonymous.post("/api/v1/auth", json={"username": "alice", "password": wrong})
    assert refused.status_code == 403
    listing = anonymous.get(f"/api/v1/nodes/fake_driver?auth_token={token}")
    assert listing.status_code == 200
    deep = anonymous.get(f"/api/v1/health?deep=1&auth_token={token}")
    assert deep.status_code == 200
    bad_token = anonymous.get(f"/api/v1/nodes?auth_token={token}x")
    assert bad_token.status_code == 401
    unmatched = anonymous.get(f"/nowhere?auth_token={token}")
    assert unmatched.status_code == 404
    revoked = anonymous.delete(f"/api/v1/auth?auth_token={token}")
    assert revoked.status_code == 200

    records = request_records(caplog)
    assert [record.caller for record in records] == [
        "-",
        "-",
        "alice",
        "alice",
        "-",
        "alice",
        "alice",
    ]
    assert [record.path for record in records][2:4] == [
        "/api/v1/nodes/fake_driver",
        "/api/v1/health",
    ]
    for record in caplog.records:
        texts = [record.getMessage(), repr(record.__dict__), *formatted(record)]
        for text in texts:
            assert token not in text, record.name
            assert PASSWORD not in text, record.name
            assert "auth_token" not in text, record.name


def test_json_formatter_writes_one_parseable_object_per_line(client, caplog):
    """formatter("json") writes one line of JSON with the request's fields."""
    client.get("/api/v1/nodes/fake_driver?marker=1", headers={"X-Request-ID": "j-1"})
    record = only_request_record(caplog)
    line = requestlog.formatter("json").format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "dispatcher.requests"
    assert {key: entry[key] for key in REQUEST_FIELDS} == fields(record)
    assert (entry["request_id"], entry["caller"], entry["endpoint"], entry["status"]) == (
        "j-1",
        "tester",
        "api_v1.listing",
        200,
    )
    assert entry["path"] == "/api/v1/nodes/fake_driver"


def test_plain_formatter_writes_key_value_text(client, caplog):
    """formatter("plain") writes the request id in brackets, then key=value pairs."""
    client.get("/api/v1/cloud", headers={"X-Request-ID": "p-1"})
    line = requestlog.formatter("plain").format(only_request_record(caplog))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO dispatcher\.requests \[p-1\] caller=tester"
        r" method=GET endpoint=api_v1\.cloud path=/api/v1/cloud status=200"
        r" duration_ms=\d+\.?\d* remote=127\.0\.0\.1",
        line,
    ), line


def test_log_format_json_writes_json_lines(own_handler, refusing_port):
    """LOG_FORMAT = "json" with no logging set up by the host: every line the dispatcher
    writes is a JSON object; a request's lines carry its id."""
    app, stream = own_handler(
        LOG_FORMAT="json",
        CLOUD_FARM={"default": {"ENGINE": "dummy"}, "bad": ec2_cloud(refusing_port)},
    )
    client = token_client(app)
    stream.seek(0)
    stream.truncate()
    client.get("/api/v1/nodes?limit=1", headers={"X-Request-ID": "json-1"})
    client.get("/api/v1/nodes/bad", headers={"X-Request-ID": "json-2"})
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [entry for entry in entries if entry["logger"] == "dispatcher.requests"]
    assert [
        (e["request_id"], e["caller"], e["endpoint"], e["path"], e["status"]) for e in requests
    ] == [
        ("json-1", "tester", "api_v1.listing", "/api/v1/nodes", 200),
        ("json-2", "tester", "api_v1.listing", "/api/v1/nodes/bad", 502),
    ]
    warnings = [entry for entry in entries if entry["level"] == "WARNING"]
    assert [(e["request_id"], e["message"]) for e in warnings] == [
        ("json-2", "CloudError: bad: Connection refused")
    ]


def test_log_format_plain_is_the_default(own_handler):
    """With no LOG_FORMAT the dispatcher's own handler writes plain key=value lines."""
    app, stream = own_handler()
    app.test_client().get("/api/v1/", headers={"X-Request-ID": "plain-1"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert (
        " INFO dispatcher.requests [plain-1] caller=- method=GET endpoint=api_v1.home " in lines[0]
    )


def test_every_line_of_a_request_carries_its_id_with_a_host_handler(refusing_app, caplog):
    """Logging set up by the host (a root handler, here pytest's): the warning the dispatcher
    logs while answering a 502 still carries the request's id (README, "Logs")."""
    client = token_client(refusing_app)
    caplog.clear()
    response = client.get("/api/v1/nodes/bad", headers={"X-Request-ID": "host-1"})
    assert response.status_code == 502
    warnings = [record for record in caplog.records if record.name == "dispatcher.errors"]
    assert [record.getMessage() for record in warnings] == ["CloudError: bad: Connection refused"]
    assert getattr(warnings[0], "request_id", None) == "host-1"


def test_unknown_log_format_is_refused(tmp_path):
    """LOG_FORMAT = "xml": create_app raises ValueError naming it."""
    with pytest.raises(ValueError, match="xml"):
        create_app(
            {
                "TESTING": True,
                "CLOUD_FARM": DUMMY_FARM,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
                "LOG_FORMAT": "xml",
            }
        )


def test_request_log_off(make_app, caplog):
    """REQUEST_LOG = False: no request lines; the answer still carries its id."""
    client = token_client(make_app(REQUEST_LOG=False))
    caplog.clear()
    response = client.get("/api/v1/nodes", headers={"X-Request-ID": "quiet"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "quiet"
    assert request_records(caplog) == []


def test_request_log_kept_at_log_level_warning(make_app, caplog):
    """LOG_LEVEL = "WARNING" drops the dispatcher's INFO lines but not the request lines."""
    client = token_client(make_app(LOG_LEVEL="WARNING"))
    caplog.clear()
    client.get("/api/v1/nodes", headers={"X-Request-ID": "warn"})
    assert only_request_record(caplog).request_id == "warn"
    assert [r.name for r in caplog.records if r.levelno < logging.WARNING] == [
        "dispatcher.requests"
    ]


@pytest.mark.parametrize("encoded", ["%0A", "%0D%0A", "%0D"])
def test_a_line_break_in_the_path_cannot_forge_a_log_line(anonymous, caplog, encoded):
    """A path with an encoded line break still gives one plain log line, so a client cannot
    write a line of its own into the log."""
    forged = "2026-01-01 00:00:00,000 INFO dispatcher.requests [forged] caller=admin"
    response = anonymous.get(f"/api/v1/nodes/x{encoded}{forged.replace(' ', '%20')}")
    assert response.status_code == 401
    plain, as_json = formatted(only_request_record(caplog))
    assert "\n" not in plain and "\r" not in plain
    assert "\n" not in as_json


# The request id in the assignment history


def test_audit_entries_carry_the_request_id(app, client):
    """An assign's history row holds its X-Request-ID; the refused second assign its own,
    new id."""
    first = assign(client, **{"X-Request-ID": "assign-req-1"})
    assert first.status_code == 200
    second = assign(client, user="other")
    assert second.status_code == 409
    with app.app_context():
        entries = db.session.scalars(db.select(AuditEntry).order_by(AuditEntry.id)).all()
        rows = [(e.action, e.outcome, e.request_id) for e in entries]
    assert rows == [
        ("assign", "ok", "assign-req-1"),
        ("assign", "409", second.headers["X-Request-ID"]),
    ]
    assert is_fresh_id(second.headers["X-Request-ID"])


def test_history_shows_the_request_id(client):
    """GET /vm/history shows each entry's request_id (README's history shape)."""
    assert assign(client, **{"X-Request-ID": "assign-req-2"}).status_code == 200
    history = client.get("/api/v1/vm/history/fake_driver").json["history"]
    assert len(history) == 1
    assert history[0].get("request_id") == "assign-req-2"


# /metrics


def test_metrics_in_prometheus_text_without_a_token(anonymous):
    """/metrics answers the Prometheus text format to anyone, with the dispatcher's families."""
    anonymous.get("/api/v1/")
    response = anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "version=" in response.content_type
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert {
        "dispatcher_http_requests": "counter",
        "dispatcher_http_request_duration_seconds": "histogram",
        "dispatcher_cloud_call_duration_seconds": "histogram",
        "dispatcher_cloud_call_errors": "counter",
        "dispatcher_assignments": "counter",
        "dispatcher_history_entries": "counter",
    }.items() <= {name: family.type for name, family in families.items()}.items()


@pytest.mark.parametrize("address", ["10.0.0.7", "192.0.2.1", "2001:db8::1"])
def test_metrics_refuse_clients_off_loopback_by_default(anonymous, address):
    """Without METRICS_BEARER_TOKEN, /metrics (which names every cloud) is for loopback only."""
    response = anonymous.get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert_error(
        response,
        403,
        "Forbidden: /metrics answers loopback clients only, or set METRICS_BEARER_TOKEN",
    )
    assert anonymous.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_metrics_with_a_bearer_token_answer_its_holder_from_anywhere(make_app, monkeypatch):
    """With a token (here from DISPATCHER_METRICS_TOKEN) only a scraper sending it is let in,
    on loopback too."""
    monkeypatch.setenv("DISPATCHER_METRICS_TOKEN", "scrape-me-8f2c")
    client = make_app().test_client()
    remote = {"REMOTE_ADDR": "10.0.0.7"}
    refusal = "Unauthorized: /metrics needs the bearer token METRICS_BEARER_TOKEN"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me-8f2c"}):
        assert_error(client.get("/metrics", headers=headers), 401, refusal)
    granted = {"Authorization": "Bearer scrape-me-8f2c"}
    assert client.get("/metrics", headers=granted, environ_base=remote).status_code == 200
    assert "scrape-me-8f2c" not in client.get("/metrics", headers=granted).text


def test_metrics_imports_nothing_of_the_dispatcher():
    """dispatcher/metrics.py is at the bottom: every module may count, and it imports no module
    of the dispatcher, at its top or in a function (a package registers its own collector)."""
    tree = ast.parse(Path(metrics.__file__).read_text())
    ours = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").partition(".")[0] == "dispatcher":
                ours.append(f"{'.' * node.level}{node.module or ''} (line {node.lineno})")
        elif isinstance(node, ast.Import):
            ours += [a.name for a in node.names if a.name.partition(".")[0] == "dispatcher"]
    assert ours == []


def test_metrics_show_what_each_package_collects_at_each_scrape(make_app):
    """The figures read at each scrape, each from its own package: the pools' VMs by state,
    the clouds' circuits and the reconcile's last report, with their help texts."""
    web_pool = {"web": {"clouds": [{"cloud": "default", "image": "1", "size": "1"}],
                     "min_ready": 0, "max_total": 1}}  # fmt: skip
    client = make_app(POOLS=web_pool).test_client()
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert {
        name: (families[name].type, families[name].documentation)
        for name in (
            "dispatcher_pool_vms",
            "dispatcher_cloud_circuit_open",
            "dispatcher_reconcile_findings",
            "dispatcher_reconcile_checked_timestamp_seconds",
        )
    } == {
        "dispatcher_pool_vms": ("gauge", "VMs of each warm pool, by state."),
        "dispatcher_cloud_circuit_open": (
            "gauge",
            "1 while the cloud's circuit is open in the process that answers (not asked).",
        ),
        "dispatcher_reconcile_findings": (
            "gauge",
            "Orphans, ghosts and mismatches the last reconcile report found, by cloud.",
        ),
        "dispatcher_reconcile_checked_timestamp_seconds": (
            "gauge",
            "When the last reconcile report listed the cloud (Unix time).",
        ),
    }
    samples = {
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for name in ("dispatcher_pool_vms", "dispatcher_cloud_circuit_open")
        for sample in families[name].samples
    }
    assert ("dispatcher_pool_vms", (("pool", "web"), ("state", "free")), 0.0) in samples
    assert ("dispatcher_cloud_circuit_open", (("cloud", "fake_driver"),), 0.0) in samples


def scraped(client, name, labels):
    """The value of one sample as /metrics shows it; 0 where it is absent."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def test_one_listing_counts_one_request(client):
    """One nodes listing: +1 under endpoint api_v1.listing, GET, 200, in the registry and on
    /metrics; its duration histogram +1."""
    labels = {"endpoint": "api_v1.listing", "method": "GET", "status": "200"}
    shown = scraped(client, "dispatcher_http_requests_total", labels)
    before = requests_counted("api_v1.listing", "200")
    durations = metric(
        "dispatcher_http_request_duration_seconds_count", endpoint="api_v1.listing", method="GET"
    )
    assert client.get("/api/v1/nodes/fake_driver").status_code == 200
    assert requests_counted("api_v1.listing", "200") == before + 1
    assert scraped(client, "dispatcher_http_requests_total", labels) == shown + 1
    assert (
        metric(
            "dispatcher_http_request_duration_seconds_count",
            endpoint="api_v1.listing",
            method="GET",
        )
        == durations + 1
    )


def test_unmatched_path_counts_under_unmatched(client):
    """A 404 for a path nothing serves counts under endpoint "unmatched", status 404."""
    before = requests_counted("unmatched", "404")
    assert client.get("/no/such/thing/42").status_code == 404
    assert requests_counted("unmatched", "404") == before + 1


def test_nodes_listing_is_one_cloud_call(client):
    """One nodes listing is one list_nodes call to the cloud, timed once."""
    before = cloud_calls("fake_driver", "list_nodes")
    assert client.get("/api/v1/nodes/fake_driver").status_code == 200
    assert cloud_calls("fake_driver", "list_nodes") == before + 1


def test_refusing_cloud_counts_an_error_and_answers_502(refusing_app):
    """A cloud that refuses connections: 502 naming it, one call and one error counted."""
    client = token_client(refusing_app)
    labels = {"cloud": "bad", "method": "list_nodes", "error": "ConnectionError"}
    errors = metric("dispatcher_cloud_call_errors_total", **labels)
    calls = cloud_calls("bad", "list_nodes")
    answered = requests_counted("api_v1.listing", "502")
    response = client.get("/api/v1/nodes/bad")
    assert_error(response, 502, "bad: Connection refused")
    assert metric("dispatcher_cloud_call_errors_total", **labels) == errors + 1
    assert cloud_calls("bad", "list_nodes") == calls + 1
    assert requests_counted("api_v1.listing", "502") == answered + 1


def test_assignments_counted_by_outcome(client):
    """An assign counts +1 ok, a conflicting one +1 "409"; a dry release nothing, a release
    +1 ok."""
    ok, conflict = assignments_counted("ok"), assignments_counted("409")
    assert assign(client).status_code == 200
    assert (assignments_counted("ok"), assignments_counted("409")) == (ok + 1, conflict)
    assert assign(client, user="other").status_code == 409
    assert (assignments_counted("ok"), assignments_counted("409")) == (ok + 1, conflict + 1)
    released = assignments_counted("ok", action="release")
    dry = client.put(RELEASE, json={"node": "1", "emulate": True})
    assert dry.status_code == 200
    assert assignments_counted("ok", action="release") == released
    assert client.put(RELEASE, json={"node": "1"}).status_code == 200
    assert assignments_counted("ok", action="release") == released + 1


def history_counts(name):
    """The samples of counter ``name`` in this process, by (cloud, action, outcome)."""
    return {
        (sample.labels["cloud"], sample.labels["action"], sample.labels["outcome"]): sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name
    }


def moved(before, after):
    """The labels whose count moved, and by how much."""
    return {
        key: value - before.get(key, 0)
        for key, value in after.items()
        if value != before.get(key, 0)
    }


def test_only_assigns_and_releases_count_as_assignments_every_other_entry_apart(make_app):
    """A pool pass, an extend and a forced stop each write the history: they count in
    dispatcher_history_entries, never in dispatcher_assignments (assigns and releases)."""
    web_pool = {"web": {"clouds": [{"cloud": "default", "image": "1", "size": "1"}],
                     "min_ready": 2, "max_total": 2}}  # fmt: skip
    app = make_app(POOLS=web_pool)
    client = token_client(app)
    assignments = history_counts("dispatcher_assignments_total")
    others = history_counts("dispatcher_history_entries_total")

    with app.app_context():
        pool_pass.run(pools.every())
    assert assign(client).status_code == 200
    extend = client.put("/api/v1/vm/action/extend/fake_driver", json={"node": "1", "lease": 60})
    assert extend.status_code == 200, extend.json
    stop = client.put("/api/v1/vm/stop/fake_driver", json={"node": "1", "force": True})
    assert stop.status_code == 200, stop.json

    assert moved(assignments, history_counts("dispatcher_assignments_total")) == {
        ("fake_driver", "assign", "ok"): 1
    }
    assert moved(others, history_counts("dispatcher_history_entries_total")) == {
        ("default", "create", "ok"): 2,
        ("fake_driver", "extend", "ok"): 1,
        ("fake_driver", "stop", "ok"): 1,
    }


# /api/v1/health


def test_health_answers_ok_without_a_token(anonymous):
    """GET /api/v1/health: status ok and database ok, no token needed."""
    response = anonymous.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize("deep", ["1", "true", "yes"])
def test_deep_health_needs_a_token(anonymous, deep):
    """?deep=1 without a token is the 401 envelope."""
    response = anonymous.get(f"/api/v1/health?deep={deep}")
    assert response.status_code == 401
    assert set(response.json) == ERROR_KEYS
    assert "clouds" not in response.json


@pytest.mark.parametrize("deep", ["0", "false", "no"])
def test_shallow_health_values_need_no_token(anonymous, deep):
    """?deep=0 (false, no) is the plain health answer, without a token."""
    response = anonymous.get(f"/api/v1/health?deep={deep}")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_deep_health_lists_every_cloud_reachable(client):
    """?deep=1 with a token: each cloud reachable, with its latency in ms; each asked once
    (list_nodes: the Dummy driver lists no key pairs)."""
    calls = {name: cloud_calls(name, "list_nodes") for name in DUMMY_FARM}
    response = client.get("/api/v1/health?deep=1")
    assert response.status_code == 200
    body = response.json
    assert list(body) == ["status", "database", "clouds"]
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert [cloud["name"] for cloud in body["clouds"]] == ["default", "fake_driver"]
    for cloud in body["clouds"]:
        assert set(cloud) == {"name", "reachable", "latency_ms", "circuit"}
        assert cloud["circuit"] == "closed"
        assert cloud["reachable"] is True
        assert isinstance(cloud["latency_ms"], int | float) and cloud["latency_ms"] >= 0
    assert {name: cloud_calls(name, "list_nodes") for name in DUMMY_FARM} == {
        name: count + 1 for name, count in calls.items()
    }


def test_deep_health_with_a_refusing_cloud(refusing_app):
    """One cloud refusing connections: it is unreachable with "Connection refused", the
    other reachable, and the answer is still 200 (asked with list_key_pairs on EC2)."""
    client = token_client(refusing_app)
    probes = cloud_calls("bad", "list_key_pairs")
    response = client.get("/api/v1/health?deep=1")
    assert response.status_code == 200
    clouds = {cloud["name"]: cloud for cloud in response.json["clouds"]}
    assert list(clouds) == ["default", "bad"]
    assert set(clouds["default"]) == {"name", "reachable", "latency_ms", "circuit"}
    assert clouds["default"]["reachable"] is True
    assert set(clouds["bad"]) == {"name", "reachable", "latency_ms", "message", "circuit"}
    assert clouds["bad"]["reachable"] is False
    assert "Connection refused" in clouds["bad"]["message"]
    assert "loopback-secret" not in response.text
    assert cloud_calls("bad", "list_key_pairs") == probes + 1


def test_deep_health_asks_the_clouds_at_once(make_app, hanging_port):
    """Two clouds that never answer (CLOUD_TIMEOUT 1): both unreachable, in about one
    timeout, not two."""
    farm = {"default": ec2_cloud(hanging_port), "slow": ec2_cloud(hanging_port)}
    client = token_client(make_app(CLOUD_FARM=farm, CLOUD_TIMEOUT=1))
    started = time.perf_counter()
    response = client.get("/api/v1/health?deep=1")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert [(c["name"], c["reachable"], c["message"]) for c in response.json["clouds"]] == [
        ("default", False, "default: no answer within 1 seconds"),
        ("slow", False, "slow: no answer within 1 seconds"),
    ]
    assert elapsed < 1.9


def test_health_with_the_database_gone_is_503(caplog, refusing_port):
    """No database server answering: /health is the 503 envelope; / still answers 200."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{refusing_port}/test"
    app = create_app({"TESTING": True, "CLOUD_FARM": DUMMY_FARM, "SQLALCHEMY_DATABASE_URI": url})
    client = app.test_client()
    try:
        response = client.get("/api/v1/health", headers={"X-Request-ID": "db-gone"})
        assert_error(response, 503, "Database unavailable: try again later")
        assert response.headers["X-Request-ID"] == "db-gone"
        assert client.get("/api/v1/").json == {"status": "ok"}
        assert client.get("/metrics").status_code == 200
    finally:
        with app.app_context():
            db.engine.dispose()
    statuses = [(r.request_id, r.status) for r in request_records(caplog)]
    assert statuses[0] == ("db-gone", 503)


@pytest.mark.parametrize("deep", ["AAA", "2", "on", "True"])
def test_a_deep_value_that_is_no_switch_is_400(anonymous, deep):
    """?deep= takes the documented values only: anything else is refused, not taken for yes."""
    response = anonymous.get("/api/v1/health", query_string={"deep": deep})
    assert_error(response, 400, "deep: one of 0, 1, false, true, no, yes")
