"""The OpenAPI document: valid, complete, built from the validating schemas, and true."""

import re

import jsonschema
import pytest
import sqlalchemy
from conftest import token_client
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from dispatcher import clouds, models, pools, validation, webhooks
from dispatcher.errors import InvalidRequestError
from dispatcher.extensions import db
from dispatcher.fields import body_json_schema
from dispatcher.models import FREE, Assignment, AuditEntry
from dispatcher.worker import pool_pass

REQUEST_SCHEMAS = [
    value for value in vars(validation).values() if isinstance(value, validation.Schema)
]

PUBLIC = {
    ("/api/v1/", "get"),
    ("/api/v1/", "post"),
    ("/api/v1/auth", "post"),
    ("/api/v1/health", "get"),
    ("/api/v1/openapi.json", "get"),
    ("/api/v1/docs", "get"),
    ("/api/v1/docs/{filename}", "get"),
    ("/console", "get"),
    ("/console/assets/{filename}", "get"),
}


@pytest.fixture
def document(anonymous):
    response = anonymous.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def openapi_path(rule):
    """/vm/action/<any(reboot, poweron):action>/<cloud> -> /vm/action/{action}/{cloud}"""
    return re.sub(r"<(?:[^<>]*:)?(\w+)>", r"{\1}", rule.rule)


def test_document_is_valid_openapi_3_1_and_needs_no_token(document):
    """openapi-spec-validator accepts the document, served without a token."""
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_of_the_app_is_in_the_document(app, document):
    """Each route and method of the running app has its operation in the document."""
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = openapi_path(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in document["paths"].get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []
    assert len(document["paths"]) >= 40


def test_request_bodies_are_the_validating_schemas(app, document):
    """Each body's schema is built from the very fields that validate it, and each view's
    requestBody names the schema its @accepts validates with."""
    components = document["components"]["schemas"]
    for schema in REQUEST_SCHEMAS:
        assert components[schema.name] == body_json_schema(schema)
    for rule in app.url_map.iter_rules():
        view_class = getattr(app.view_functions[rule.endpoint], "view_class", None)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            schema = getattr(getattr(view_class, method.lower(), None), "request_schema", None)
            operation = document["paths"][openapi_path(rule)][method.lower()]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            assert (body["schema"]["$ref"].rsplit("/")[-1] if body else None) == (
                schema.name if schema else None
            ), (method, rule.rule)
    assert components["vm_start"]["required"] == ["name", "image", "size"]
    assert components["vm_stop"]["oneOf"] == [{"required": ["node"]}, {"required": ["hostname"]}]
    # An assign names one VM, or none: then a free VM of the warm pool of its vm_type.
    assert components["vm_assign"]["not"] == {"required": ["node", "hostname"]}


def test_token_is_required_everywhere_but_the_public_endpoints(document):
    """Every operation but the root, POST /auth, the docs and the console's page names the
    token schemes."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            public = (path, method) in PUBLIC
            assert (operation["security"] == []) == public, (method, path)
    schemes = document["components"]["securitySchemes"]
    assert schemes["token_header"] == {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
    assert schemes["token_query"]["name"] == "auth_token"


def test_path_parameters_and_choices(document):
    """Path parameters are declared; fixed choices (reboot, poweron, poweroff) are an enum."""
    power = document["paths"]["/api/v1/vm/action/{action}/{cloud}"]
    names = {parameter["name"]: parameter for parameter in power["parameters"]}
    assert names["action"]["schema"]["enum"] == ["reboot", "poweron", "poweroff"]
    listing = document["paths"]["/api/v1/{action}/{cloud}"]["parameters"]
    assert listing[0]["schema"]["enum"] == [
        "nodes",
        "images",
        "flavors",
        "sizes",
        "tenants",
        "locations",
        "keypairs",
        "volumes",
    ]
    assert names["cloud"]["required"] is True
    assert "parameters" not in document["paths"]["/api/v1/fw/open"]


def test_every_action_the_history_records_is_in_the_documents_enum(make_app, good):
    """Each kind of change run for real writes its history entry: assign, release, extend
    and stop; the pool manager's create, promote and destroy; a reconcile fix; a lease
    webhook call; an admin's override of a pool. Their actions are in the document's enum,
    for an entry's ``action`` and for the history's ``action`` filter alike, and that enum
    is models.ACTIONS, the one list. (``adopt`` needs a cloud that keeps a pool's marks:
    test_pools_ec2.py; ``check`` a VM that fails its ready check: test_pools_ready.py; the
    requests' ``request``, ``serve``, ``cancel`` and ``expire``: test_requests.py.)"""
    web = {"web": {"clouds": [{"cloud": "default", "image": "1", "size": "1"}],
                   "min_ready": 1, "max_total": 1}}  # fmt: skip
    app = make_app(POOLS=web, LEASE_WEBHOOK_URL=good.url(), LEASE_WEBHOOK_SECRET="s3cret")
    client = token_client(app, "boss", roles=("admin", "agent"))
    with app.app_context():
        pool_pass.run(pools.every())  # create
        pool_pass.run(pools.every())  # promote
        pooled = db.session.scalar(
            sqlalchemy.select(Assignment.id_vm).where(Assignment.pool == "web")
        )
        driver = clouds.get("default").driver
        [node] = [node for node in driver.list_nodes() if str(node.id) == pooled]
        driver.destroy_node(node)
        pool_pass.run(pools.every())  # destroy (gone from its cloud), create
        db.session.add(Assignment(cloud="default", id_vm="404", hostname="ghost", status=FREE))
        db.session.commit()
    change = "/api/v1/vm/action/{}/fake_driver"
    for action, body in [
        ("assign", {"node": "1", "user": "ada", "vm_type": "app", "lease": 600}),
        ("extend", {"node": "1", "lease": 900}),
        ("release", {"node": "1"}),  # leased: its webhook hears of it
        ("assign", {"node": "2", "user": "ada", "vm_type": "app"}),
    ]:
        assert client.put(change.format(action), json=body).status_code == 200
    forced = {"node": "2", "force": True}
    assert client.put("/api/v1/vm/stop/fake_driver", json=forced).status_code == 200
    assert client.patch("/api/v1/pools/web", json={"paused": True}).status_code == 200
    applied = client.post("/api/v1/reconcile/default", json={"apply": True})
    assert applied.json["ghosts"][0]["fix"] == "marked DELETED"
    with app.app_context():
        assert webhooks.deliver_due().delivered == 1
        recorded = set(db.session.scalars(sqlalchemy.select(AuditEntry.action).distinct()))

    document = client.get("/api/v1/openapi.json").json
    entry = document["components"]["schemas"]["HistoryEntry"]["properties"]["action"]["enum"]
    history = document["paths"]["/api/v1/vm/history/{cloud}"]["get"]["parameters"]
    [action_filter] = [parameter for parameter in history if parameter["name"] == "action"]
    assert recorded <= set(entry)
    assert action_filter["schema"].get("enum") == entry
    assert entry == list(models.ACTIONS)
    assert recorded == set(models.ACTIONS) - {"adopt", "check", *REQUEST_ACTIONS}


# The history's actions of the requests in line: test_requests.py makes each for real.
REQUEST_ACTIONS = {"request", "serve", "cancel", "expire"}


def test_the_reconcile_post_body_is_optional(document):
    """POST /api/v1/reconcile[/<cloud>] without a body is a dry run: the document says the
    body is not required (read from the view's @accepts(..., optional=True))."""
    for path in ("/api/v1/reconcile", "/api/v1/reconcile/{cloud}"):
        assert document["paths"][path]["post"]["requestBody"]["required"] is False


def test_the_document_says_which_bodies_are_required_as_the_server_does(make_app, document):
    """Every operation with a body, sent without one by an admin: where the document says
    the body is required, the server refuses it (400); where it does not, it answers."""
    client = token_client(make_app(), "boss", roles=("admin", "agent"))
    refusal = "Malformed JSON stream: the body must be a JSON object"
    seen = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or "requestBody" not in operation:
                continue
            url = path.replace("{cloud}", "fake_driver").replace("{action}", "reboot")
            url = url.replace("{scope}", "role").replace("{name}", "agent")
            answer = client.open(url, method=method.upper())
            required = operation["requestBody"]["required"]
            refused = answer.status_code == 400 and answer.json["message"] == refusal
            assert refused is required, (method, path, answer.status_code, answer.json)
            seen[(method, path)] = required
    assert seen[("post", "/api/v1/reconcile")] is False
    assert seen[("put", "/api/v1/vm/action/assign")] is True


def answer_schema(document, path, method, status="200"):
    responses = document["paths"][path][method]["responses"]
    schema = responses[status]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


@pytest.mark.parametrize(
    ("method", "path", "document_path", "body"),
    [
        ("get", "/api/v1/nodes/fake_driver", "/api/v1/{action}/{cloud}", None),
        ("get", "/api/v1/flavors", "/api/v1/{action}", None),
        ("get", "/api/v1/locations/fake_driver", "/api/v1/{action}/{cloud}", None),
        ("get", "/api/v1/cloud", "/api/v1/cloud", None),
        ("get", "/api/v1/nodes/fake_driver/1", "/api/v1/nodes/{cloud}/{node_id}", None),
        (
            "post",
            "/api/v1/vm/start/fake_driver",
            "/api/v1/vm/start/{cloud}",
            {"name": "w", "image": "1", "size": "1"},
        ),
        (
            "put",
            "/api/v1/vm/action/assign/fake_driver",
            "/api/v1/vm/action/assign/{cloud}",
            {"node": "1", "user": "u", "vm_type": "a"},
        ),
        ("get", "/api/v1/vm/status/fake_driver", "/api/v1/vm/status/{cloud}", None),
        ("get", "/api/v1/vm/history/fake_driver", "/api/v1/vm/history/{cloud}", None),
    ],
)
def test_real_answers_match_the_document(client, document, method, path, document_path, body):
    """What the service answers validates against the answer schema the document gives."""
    response = getattr(client, method)(path, json=body)
    assert response.status_code == 200, response.json
    jsonschema.validate(response.json, answer_schema(document, document_path, method))


def test_errors_match_the_error_envelope(client, document):
    """Error answers validate against the document's error schema."""
    response = client.get("/api/v1/nodes/atlantis")
    assert response.status_code == 404
    schema = answer_schema(document, "/api/v1/{action}/{cloud}", "get", "default")
    jsonschema.validate(response.json, schema)


def test_docs_page_loads_swagger_ui_from_the_package(anonymous):
    """/api/v1/docs is an HTML page whose Swagger UI files come from this server."""
    page = anonymous.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert 'src="/api/v1/docs/swagger-ui-bundle.js"' in html
    assert 'url: "/api/v1/openapi.json"' in html
    assert "https://" not in html
    # A file's answer holds the file open until it is closed, as a WSGI server would.
    with anonymous.get("/api/v1/docs/swagger-ui-bundle.js") as script:
        assert script.status_code == 200
        assert b"SwaggerUIBundle" in script.data
    assert anonymous.get("/api/v1/docs/no-such-file.js").status_code == 404


def test_metrics_is_documented_with_its_own_scheme(document):
    """/metrics: text, scraped with its bearer token or, on loopback, with nothing."""
    operation = document["paths"]["/metrics"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/plain"]
    assert operation["security"] == [{"metrics_bearer": []}, {}]
    assert document["components"]["securitySchemes"]["metrics_bearer"]["scheme"] == "bearer"


# The document and the validation agree: what one allows the other accepts, both ways.
# Two rules are said in a description only, JSON Schema having no words for them: a
# cidr's network syntax, and to_port not below from_port (but with icmp).


def described_only(body: dict) -> bool:
    """Whether ``body`` meets a rule the document only describes."""
    cidr = body.get("cidr")
    if isinstance(cidr, str):
        return True
    ports = body.get("from_port"), body.get("to_port")
    protocol = body.get("protocol", "tcp")
    return all(isinstance(port, int | float) for port in ports) and protocol != "icmp"


def accepted(schema, body) -> bool:
    try:
        validation.validate(schema, body)
    except InvalidRequestError:
        return False
    return True


# Values of every JSON type, and those at the edges of the documented rules.
EDGES = st.sampled_from(
    ["", "x", "x" * 255, "x" * 256, "a\x00b", "tcp", "UDP", "iCmP", "sctp", "10.0.0.0/8"]
    + [0, 1, -1, 65535, 65536, 5.0, 1.5, True, False, None, [], {}, ["g"], {"k": "v"}, {"k": 1}]
)
JSON_VALUES = EDGES | st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


def example(document: dict) -> dict:
    """The plainest body the document allows: each required field, node if it asks, and
    of the fields it wants one of (``anyOf``) the first of a plain type."""
    plain = {"string": "x", "integer": 1, "boolean": False, "object": {}, "array": ["x"]}
    wanted = [branch["required"][0] for branch in document.get("anyOf", [])]
    typed = [name for name in wanted if "type" in document["properties"][name]]
    required = [*document.get("required", []), *typed[:1]]
    body = {name: _plain(document["properties"][name], plain) for name in required}
    return {**body, "node": "x"} if "oneOf" in document else body


def _plain(field: dict, plain: dict):
    """A plain value of ``field``'s type; an object that must have properties, one."""
    if field["type"] == "object" and field.get("minProperties"):
        return {"x": plain[field["additionalProperties"]["type"]]}
    return plain[field["type"]]


@pytest.mark.parametrize("schema", REQUEST_SCHEMAS, ids=lambda schema: schema.name)
def test_the_plainest_body_the_document_allows_is_accepted(schema):
    document = body_json_schema(schema)
    body = example(document)
    assert jsonschema.Draft202012Validator(document).is_valid(body)
    assert accepted(schema, body), body


@pytest.mark.parametrize("schema", REQUEST_SCHEMAS, ids=lambda schema: schema.name)
@settings(max_examples=100, deadline=None, derandomize=True)
@given(data=st.data())
def test_the_document_and_the_validation_agree_on_every_body(schema, data):
    """Bodies of the document's field names (and one it does not know) with values of any
    JSON type, at the edges of the rules or not: the validation accepts exactly those the
    document allows."""
    document = body_json_schema(schema)
    names = [*document["properties"], "unknown"]
    body = data.draw(st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=len(names)))
    if data.draw(st.booleans()):  # half of them start from a body it allows
        body = {**example(document), **body}
    assume(not described_only(body))
    allowed = jsonschema.Draft202012Validator(document).is_valid(body)
    assert accepted(schema, body) == allowed, body


# The operations that take an Idempotency-Key (each with and without /{cloud}); the
# quotas' and the pools' only for admins.
ADMINS_ONLY = {
    ("patch", "/api/v1/pools/{name}"),
    ("delete", "/api/v1/pools/{name}"),
    ("put", "/api/v1/quotas/default"),
    ("delete", "/api/v1/quotas/default"),
    ("put", "/api/v1/quotas/{scope}/{name}"),
    ("delete", "/api/v1/quotas/{scope}/{name}"),
}
IDEMPOTENT = {
    ("post", "/api/v1/vm/start"),
    ("put", "/api/v1/vm/stop"),
    ("put", "/api/v1/vm/action/{action}"),
    ("put", "/api/v1/vm/action/assign"),
    ("put", "/api/v1/vm/action/release"),
    ("put", "/api/v1/vm/action/extend"),
    ("post", "/api/v1/fw"),
    ("delete", "/api/v1/fw"),
    ("put", "/api/v1/fw/open"),
    ("post", "/api/v1/fw/open"),
    ("put", "/api/v1/fw/close"),
    ("post", "/api/v1/fw/close"),
    ("post", "/api/v1/storage/create"),
    ("put", "/api/v1/storage/attach"),
    ("put", "/api/v1/storage/detach"),
    ("put", "/api/v1/storage/destroy"),
    ("post", "/api/v1/requests"),
    ("delete", "/api/v1/requests/{request_id}"),
    *ADMINS_ONLY,
}
# The operations that may answer 202: taken, to be done later.
ACCEPTING = {("post", "/api/v1/requests")}


def test_every_change_takes_an_idempotency_key_and_says_what_it_answers(document):
    """Each operation that needs the role agent (or, for the quotas and the pools, admin)
    documents the Idempotency-Key header, its 409 (with Retry-After) and 422, and
    Idempotent-Replayed on the answers; no other does."""
    found = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
            if not headers:
                assert set(operation["responses"]) == {"200", "default"}, (method, path)
                continue
            found.add((method, path.removesuffix("/{cloud}")))
            roles = "admin" if (method, path) in ADMINS_ONLY else "agent or admin"
            assert f"Needs the role {roles}." in operation["description"]
            assert [(p["name"], p["required"]) for p in headers] == [("Idempotency-Key", False)]
            assert headers[0]["schema"]["maxLength"] == 257  # 255 and the quotes
            responses = operation["responses"]
            accepted = ["202"] if (method, path) in ACCEPTING else []
            assert list(responses) == ["200", *accepted, "409", "422", "default"]
            assert "Retry-After" in responses["409"]["headers"]
            for status in ("200", *accepted, "409", "default"):
                replayed = responses[status]["headers"]["Idempotent-Replayed"]
                assert replayed["schema"] == {"type": "string", "enum": ["true"]}
    assert found == IDEMPOTENT


def test_a_replayed_answer_matches_the_document(client, document):
    """The replay's body validates against the 200 schema; its header against the header's."""
    body = {"node": "1", "user": "u", "vm_type": "a"}
    headers = {"Idempotency-Key": "replay-me"}
    client.put("/api/v1/vm/action/assign/fake_driver", json=body, headers=headers)
    replay = client.put("/api/v1/vm/action/assign/fake_driver", json=body, headers=headers)
    assert replay.status_code == 200
    path = "/api/v1/vm/action/assign/{cloud}"
    jsonschema.validate(replay.json, answer_schema(document, path, "put"))
    declared = document["paths"][path]["put"]["responses"]["200"]["headers"]
    jsonschema.validate(
        replay.headers["Idempotent-Replayed"], declared["Idempotent-Replayed"]["schema"]
    )
