"""The OpenAPI document: valid, complete, built from the validating schemas, and true."""

import re

import jsonschema
import pytest
from openapi_spec_validator import validate

from dispatcher import validation

PUBLIC = {
    ("/api/v1/", "get"),
    ("/api/v1/", "post"),
    ("/api/v1/auth", "post"),
    ("/api/v1/health", "get"),
    ("/api/v1/openapi.json", "get"),
    ("/api/v1/docs", "get"),
    ("/api/v1/docs/{filename}", "get"),
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
    """Each API route and method of the running app has its operation in the document."""
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = openapi_path(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in document["paths"].get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []
    assert len(document["paths"]) >= 40


def test_request_bodies_are_the_validating_schemas(document):
    """The body schemas are generated from the very Schema objects that validate requests."""
    components = document["components"]["schemas"]
    for schema in (validation.START, validation.ASSIGN, validation.PORT_RULE, validation.VOLUME):
        generated = schema.json_schema(schema.name, use_refs=False)
        del generated["$id"], generated["$schema"]
        assert components[schema.name] == generated
    start = document["paths"]["/api/v1/vm/start/{cloud}"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/vm_start"
    }
    assert components["vm_start"]["required"] == ["name", "image", "size"]


def test_token_is_required_everywhere_but_the_public_endpoints(document):
    """Every operation but the root, POST /auth and the docs names the token schemes."""
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
    assert names["cloud"]["required"] is True
    assert "parameters" not in document["paths"]["/api/v1/fw/open"]


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
    script = anonymous.get("/api/v1/docs/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert b"SwaggerUIBundle" in script.data
    assert anonymous.get("/api/v1/docs/no-such-file.js").status_code == 404
