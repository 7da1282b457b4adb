"""The OpenAPI 3.1 document of the API, read from the URL table and the views' declarations.

Paths, methods, parameters and guards come from the registered routes and their
views; request bodies from the ``schema`` objects that validate them (``@accepts``);
query parameters from ``@query``; answers from ``@answers`` and the shapes that the
functions building them carry (``shapes.describes``).
"""

import re

from flask import current_app

from ..errors import envelope
from ..fields import body_json_schema
from ..shapes import ListOf, shape_of
from . import idempotency
from .base import ApiView, PublicView

METHODS = ("get", "post", "put", "delete", "patch")


class Components:
    """The named shapes the document refers to, collected as the operations use them."""

    def __init__(self):
        self.schemas: dict[str, dict] = {}

    def schema(self, declared) -> dict:
        """The JSON Schema of a declared type: a plain schema, a shape, or a list of one."""
        if isinstance(declared, ListOf):
            return {"type": "array", "items": self.schema(declared.item)}
        shape = shape_of(declared)
        if shape is None:
            return declared
        if shape.name not in self.schemas:
            self.schemas[shape.name] = {}  # taken before its fields, which may refer back
            self.schemas[shape.name] = self.object(shape.required, shape.optional)
        return {"$ref": f"#/components/schemas/{shape.name}"}

    def object(self, required: dict, optional: dict | None = None) -> dict:
        """A JSON object with ``required`` fields and ``optional`` ones."""
        fields = {**required, **(optional or {})}
        return {
            "type": "object",
            "properties": {name: self.schema(declared) for name, declared in fields.items()},
            "required": list(required),
        }


_CONVERTER = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")


def _path(rule) -> tuple[str, list[dict]]:
    """The OpenAPI path of a Werkzeug rule and its path parameters."""
    parameters = []

    def replace(match):
        name = match["name"]
        schema = {"type": "string"}
        choices = getattr(rule.map.converters.get(match["converter"]), "choices", None)
        if match["converter"] == "any":
            schema["enum"] = [choice.strip() for choice in match["args"].split(",")]
        elif choices:
            schema["enum"] = list(choices)
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _CONVERTER.sub(replace, rule.rule), parameters


def _ok_schema(answer, components: Components) -> dict:
    status = {"status": {"const": "ok"}}
    if not answer.variants:
        return components.object({**status, **answer.fields}, answer.optional)
    return {
        "allOf": [
            components.object(status),
            {
                "anyOf": [
                    components.object({**answer.fields, **variant}, answer.optional)
                    for variant in answer.variants
                ]
            },
        ]
    }


def _operation(rule, view_class, method: str, components: Components, security: list) -> dict:
    handler = getattr(view_class, method)
    paragraph = (handler.__doc__ or view_class.__doc__ or "").strip().split("\n\n")[0]
    summary = " ".join(line.strip() for line in paragraph.splitlines())
    answer = getattr(handler, "answer", None)
    if answer is None:
        raise LookupError(f"{view_class.__name__}.{method} declares no answer (@answers)")
    if answer.content_type != "application/json":
        content = {answer.content_type: {"schema": {"type": "string"}}}
    else:
        content = {"application/json": {"schema": _ok_schema(answer, components)}}
    for also in answer.also_as:
        content[also] = {"schema": {"type": "string"}}
    operation = {
        "operationId": f"{rule.endpoint.replace('.', '_')}_{method}"
        + ("_cloud" if "<cloud>" in rule.rule else ""),
        "summary": summary,
        "responses": {
            "200": {"description": "ok", "content": content},
            "default": {
                "description": "the error envelope, with the status of the failure",
                "content": {"application/json": {"schema": components.schema(envelope)}},
            },
        },
    }
    if answer.accepted:
        operation["responses"]["202"] = {
            "description": "accepted: it waits in line; Location names it",
            "headers": {"Location": {"schema": {"type": "string"}}},
            "content": content,
        }
    request_schema = getattr(handler, "request_schema", None)
    if request_schema is not None:
        components.schemas.setdefault(request_schema.name, body_json_schema(request_schema))
        operation["requestBody"] = {
            "required": not getattr(handler, "body_optional", False),
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{request_schema.name}"}
                }
            },
        }
    secured = issubclass(view_class, ApiView) or getattr(handler, "token_required", False)
    operation["security"] = security if secured else []
    own = getattr(view_class, "openapi_security", None)
    if own:  # its own scheme, or nothing at all ({}): /metrics on loopback
        operation["security"] = [{name: []} for name in own] + [{}]
    roles = getattr(handler, "roles", None)
    if roles:
        operation["description"] = f"Needs the role {' or '.join(roles)}."
    parameters = getattr(handler, "query_parameters", {})
    if parameters:
        operation["parameters"] = [
            {"name": name, "in": "query", "required": False, "schema": parameter.schema}
            for name, parameter in parameters.items()
        ]
    if getattr(handler, "idempotent", False):
        _idempotent(operation, components)
    return operation


def _idempotent(operation: dict, components: Components) -> None:
    """The Idempotency-Key header of an operation (``@idempotent``) and what it answers."""
    operation.setdefault("parameters", []).append(
        {
            "name": idempotency.HEADER,
            "in": "header",
            "required": False,
            "description": idempotency.HEADER_DESCRIPTION,
            # A quoted key has its two quotes besides.
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": idempotency.KEY_LENGTH_MAX + 2,
                "pattern": "^[ -~]+$",
            },
        }
    )
    error = {"application/json": {"schema": components.schema(envelope)}}
    replayed = {
        idempotency.REPLAYED_HEADER: {
            "description": idempotency.REPLAYED_DESCRIPTION,
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
    responses = operation["responses"]
    operation["responses"] = {
        "200": {**responses["200"], "headers": replayed},
        **(
            {"202": {**responses["202"], "headers": {**responses["202"]["headers"], **replayed}}}
            if "202" in responses
            else {}
        ),
        "409": {
            "description": idempotency.IN_USE_DESCRIPTION
            + ", or a conflict of the operation itself",
            "headers": {"Retry-After": {"schema": {"type": "string"}}, **replayed},
            "content": error,
        },
        "422": {"description": idempotency.REUSED_DESCRIPTION, "content": error},
        "default": {**responses["default"], "headers": replayed},
    }


def _token_schemes(config) -> dict:
    """Where a token may be sent, named as the settings name them."""
    return {
        "token_header": {
            "type": "apiKey",
            "in": "header",
            "name": config["SECURITY_TOKEN_AUTHENTICATION_HEADER"],
        },
        "token_query": {
            "type": "apiKey",
            "in": "query",
            "name": config["SECURITY_TOKEN_AUTHENTICATION_KEY"],
        },
    }


def build_document(app=None) -> dict:
    """The OpenAPI 3.1 document of every API route of ``app`` (the current app by default).

    :raises LookupError: a view method declares no answer.
    """
    app = app or current_app
    components = Components()
    schemes = _token_schemes(app.config)
    # A token also works in a JSON body's key, which OpenAPI cannot say.
    security = [{name: []} for name in schemes]
    paths: dict = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        view_class = getattr(app.view_functions[rule.endpoint], "view_class", None)
        if view_class is None or not issubclass(view_class, PublicView):
            continue  # not a view of the API (Flask's static files, say)
        schemes.update(getattr(view_class, "openapi_security", {}))
        path, parameters = _path(rule)
        fixed = set(rule.defaults or {})
        parameters = [parameter for parameter in parameters if parameter["name"] not in fixed]
        item = paths.setdefault(path, {})
        if parameters:
            item["parameters"] = parameters
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            item[method.lower()] = _operation(
                rule, view_class, method.lower(), components, security
            )
    header, key = (scheme["name"] for scheme in list(schemes.values())[:2])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dispatcher",
            "version": app.config.get("API_VERSION", "1"),
            "description": (
                "One token-protected JSON API in front of a pool of clouds. A token goes in the "
                f"{header} header, the {key} query parameter, or the {key} key of a JSON body."
            ),
        },
        "paths": paths,
        "components": {"securitySchemes": schemes, "schemas": components.schemas},
    }
