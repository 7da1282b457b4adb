"""The OpenAPI 3.1 document of the API, built from the URL table and the request schemas.

Paths, methods, parameters and guards come from the registered routes and their
views; request bodies from the ``schema`` objects that validate them (``@accepts``);
answers from the shapes below, which are DESIGN.md's.
"""

import re

from flask import current_app

from .base import ApiView

TOKEN_SCHEMES = {
    "token_header": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
    "token_query": {"type": "apiKey", "in": "query", "name": "auth_token"},
}
# A token also works as the `auth_token` key of a JSON body, which OpenAPI cannot say.
TOKEN_SECURITY = [{"token_header": []}, {"token_query": []}]


def _object(required: dict, optional: dict | None = None) -> dict:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


_TEXT = {"type": "string"}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_INTEGER_OR_NULL = {"type": ["integer", "null"]}
_ANY = {}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict:
    return {"type": "array", "items": _ref(name)}


SHAPES = {
    "Error": _object(
        {
            "status": {"const": "error"},
            "status_code": {"type": "integer"},
            "status_short_message": _TEXT,
            "status_long_message": _TEXT,
            "message": _TEXT,
        }
    ),
    "Node": _object(
        {
            "name": _TEXT_OR_NULL,
            "uuid": _TEXT,
            "id": _TEXT,
            "provider": _TEXT,
            "public_ips": {"type": "array"},
            "private_ips": {"type": "array"},
            "cloud_type": _TEXT,
            "state": _TEXT,
            "extra": {"type": "object"},
        }
    ),
    "Image": _object({"id": _TEXT, "name": _TEXT_OR_NULL, "provider": _TEXT, "cloud_type": _TEXT}),
    "Flavor": _object(
        {
            "id": _TEXT,
            "name": _TEXT_OR_NULL,
            "ram": _ANY,
            "cpu": _ANY,
            "disk": _ANY,
            "provider": _TEXT,
            "cloud_type": _TEXT,
        }
    ),
    "Tenant": _object({"id": _TEXT, "name": _TEXT_OR_NULL, "provider": _TEXT, "cloud_type": _TEXT}),
    "Location": _object(
        {
            "id": _TEXT,
            "name": _TEXT_OR_NULL,
            "country": _TEXT_OR_NULL,
            "provider": _TEXT,
            "cloud_type": _TEXT,
        }
    ),
    "KeyPair": _object({"name": _TEXT, "fingerprint": _TEXT_OR_NULL}),
    "CloudHealth": _object(
        {"name": _TEXT, "reachable": {"type": "boolean"}, "latency_ms": {"type": "number"}},
        {"message": _TEXT},
    ),
    "Volume": _object(
        {
            "id": _TEXT,
            "name": _TEXT_OR_NULL,
            "size": _INTEGER_OR_NULL,
            "state": _TEXT,
            "provider": _TEXT,
            "cloud_type": _TEXT,
            "extra": {"type": "object"},
        }
    ),
    "Rule": _object(
        {
            "protocol": _TEXT_OR_NULL,
            "from_port": _INTEGER_OR_NULL,
            "to_port": _INTEGER_OR_NULL,
            "cidr": _TEXT_OR_NULL,
        }
    ),
    "Group": _object(
        {
            "id": _TEXT,
            "name": _TEXT_OR_NULL,
            "description": _TEXT_OR_NULL,
            "rules": _list_of("Rule"),
        }
    ),
    "Assignment": _object(
        {
            "id": _ANY,
            "id_vm": _ANY,
            "hostname": _TEXT_OR_NULL,
            "cloud": _TEXT_OR_NULL,
            "recipe": _TEXT_OR_NULL,
            "recipe_id": _ANY,
            "user": _TEXT_OR_NULL,
            "status": {"type": "integer", "description": "1 FREE, 2 ASSIGNED, 3 FAULTY"},
            "status_desc": _TEXT,
        }
    ),
    "HistoryEntry": _object(
        {
            "id": {"type": "integer"},
            "time": _TEXT_OR_NULL,
            "cloud": _TEXT,
            "action": {"enum": ["assign", "release"]},
            "id_vm": _TEXT_OR_NULL,
            "hostname": _TEXT_OR_NULL,
            "caller": _TEXT_OR_NULL,
            "user": _TEXT_OR_NULL,
            "vm_type": _TEXT_OR_NULL,
            "outcome": _TEXT,
            "message": _TEXT_OR_NULL,
            "request_id": _TEXT_OR_NULL,
        }
    ),
    "Cloud": _object({"name": _TEXT, "type": _TEXT, "host": _TEXT_OR_NULL}),
}

_RESULT = {"result": _TEXT}
_BOOKKEEPING = {"id_vm": _ANY, "id": _ANY, "result": _TEXT_OR_NULL}
_LISTINGS = {
    "nodes": _list_of("Node"),
    "images": _list_of("Image"),
    "flavors": _list_of("Flavor"),
    "tenants": _list_of("Tenant"),
    "locations": _list_of("Location"),
    "keypairs": _list_of("KeyPair"),
    "volumes": _list_of("Volume"),
}

# (endpoint, method) -> the fields of the ok envelope beyond "status"
ANSWERS = {
    ("home", "get"): {},
    ("home", "post"): {},
    ("health", "get"): {"database": {"const": "ok"}},
    ("auth", "post"): {"status_code": {"const": 200}, "token": _TEXT},
    ("auth", "delete"): _RESULT,
    ("token_check", "put"): {"test": {"const": "passed"}, "authenticated": {"const": "yes"}},
    ("cloud", "get"): {"served_cloud": _list_of("Cloud")},
    ("node", "get"): {"node": _ref("Node")},
    ("vm_start", "post"): {"nodes": _ref("Node")},
    ("vm_stop", "put"): _RESULT,
    ("vm_power", "put"): _RESULT,
    ("vm_assign", "put"): _BOOKKEEPING,
    ("vm_release", "put"): _BOOKKEEPING,
    ("vm_status", "get"): {"nodes": _list_of("Assignment")},
    ("vm_history", "get"): {"history": _list_of("HistoryEntry")},
    ("fw", "get"): {"groups": _list_of("Group")},
    ("fw", "post"): {"group": _ref("Group")},
    ("fw_open", "put"): {"group": _ref("Group"), **_RESULT},
    ("fw_open", "post"): {"group": _ref("Group"), **_RESULT},
    ("fw_close", "put"): {"group": _ref("Group"), **_RESULT},
    ("fw_close", "post"): {"group": _ref("Group"), **_RESULT},
    ("storage_create", "post"): {"volume": _ref("Volume")},
    ("storage_attach", "put"): _RESULT,
    ("storage_detach", "put"): _RESULT,
    ("storage_destroy", "put"): _RESULT,
}


def _query(name: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema}


# endpoint -> its query parameters
QUERY_PARAMETERS = {
    "vm_history": [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50})
    ],
    "listing": [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
        _query("marker", {"type": "string", "minLength": 1, "maxLength": 255}),
    ],
    "health": [_query("deep", {"type": "string", "enum": ["0", "1"], "default": "0"})],
}

# (endpoint, method) -> fields of the ok envelope that only some answers have
OPTIONAL_ANSWERS = {
    ("health", "get"): {"clouds": _list_of("CloudHealth")},  # with ?deep=1
}

# The endpoints that answer something else than JSON.
OTHER_CONTENT = {"docs": "text/html", "docs_asset": "*/*"}

_CONVERTER = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")


def _path(rule) -> tuple[str, list[dict]]:
    """The OpenAPI path of a Werkzeug rule and its path parameters."""
    parameters = []

    def replace(match):
        name = match["name"]
        schema = {"type": "string"}
        if match["converter"] == "any":
            schema["enum"] = [choice.strip() for choice in match["args"].split(",")]
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _CONVERTER.sub(replace, rule.rule), parameters


def _operation(rule, view_class, method: str, endpoint: str) -> dict:
    handler = getattr(view_class, method)
    paragraph = (handler.__doc__ or view_class.__doc__ or "").strip().split("\n\n")[0]
    summary = " ".join(line.strip() for line in paragraph.splitlines())
    answer = ANSWERS.get((endpoint, method))
    if answer is None and endpoint == "listing":
        # next_marker only in a paged answer (limit or marker given).
        answer = {
            "anyOf": [
                _object({key: shape}, {"next_marker": _TEXT_OR_NULL})
                for key, shape in _LISTINGS.items()
            ]
        }
        ok_schema = {"allOf": [_object({"status": {"const": "ok"}}), answer]}
    else:
        ok_schema = _object(
            {"status": {"const": "ok"}, **(answer or {})}, OPTIONAL_ANSWERS.get((endpoint, method))
        )
    content = {"application/json": {"schema": ok_schema}}
    if endpoint in OTHER_CONTENT:
        content = {OTHER_CONTENT[endpoint]: {"schema": {"type": "string"}}}
    operation = {
        "operationId": f"{rule.endpoint.replace('.', '_')}_{method}"
        + ("_cloud" if "<cloud>" in rule.rule else ""),
        "summary": summary,
        "responses": {
            "200": {"description": "ok", "content": content},
            "default": {
                "description": "the error envelope, with the status of the failure",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        },
    }
    schema = getattr(handler, "request_schema", None)
    if schema is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(schema.name)}},
        }
    secured = issubclass(view_class, ApiView) or getattr(handler, "token_required", False)
    operation["security"] = TOKEN_SECURITY if secured else []
    roles = getattr(handler, "roles", None)
    if roles:
        operation["description"] = f"Needs the role {' or '.join(roles)}."
    operation["parameters"] = QUERY_PARAMETERS.get(endpoint, [])
    if not operation["parameters"]:
        del operation["parameters"]
    return operation


def _request_schemas(app) -> dict:
    schemas = {}
    for view in app.view_functions.values():
        view_class = getattr(view, "view_class", None)
        for method in ("get", "post", "put", "delete", "patch"):
            schema = getattr(getattr(view_class, method, None), "request_schema", None)
            if schema is not None:
                document = schema.json_schema(schema.name, use_refs=False)
                document.pop("$id", None)
                document.pop("$schema", None)
                schemas[schema.name] = document
    return schemas


def build_document(app=None) -> dict:
    """The OpenAPI 3.1 document of every API route of ``app`` (the current app by default)."""
    app = app or current_app
    paths: dict = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        blueprint, _, endpoint = rule.endpoint.rpartition(".")
        if blueprint not in ("api_v1", "api_v2"):
            continue
        view_class = getattr(app.view_functions[rule.endpoint], "view_class", None)
        if view_class is None:
            continue
        path, parameters = _path(rule)
        fixed = set(rule.defaults or {})
        parameters = [parameter for parameter in parameters if parameter["name"] not in fixed]
        item = paths.setdefault(path, {})
        if parameters:
            item["parameters"] = parameters
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            item[method.lower()] = _operation(rule, view_class, method.lower(), endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dispatcher",
            "version": app.config.get("API_VERSION", "1"),
            "description": (
                "One token-protected JSON API in front of a pool of clouds. A token goes in the "
                "X-Auth-Token header, the auth_token query parameter, or the auth_token key of "
                "a JSON body."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": TOKEN_SCHEMES,
            "schemas": {**SHAPES, **_request_schemas(app)},
        },
    }
