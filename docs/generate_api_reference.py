"""Write docs/api.md, the API reference, from the OpenAPI document the service serves.

python docs/generate_api_reference.py           # rewrite docs/api.md
python docs/generate_api_reference.py --check   # exit 1 if docs/api.md is stale
"""

import sys
from pathlib import Path

REFERENCE = Path(__file__).with_name("api.md")

HEADER = """# API reference

Generated from the OpenAPI document (`GET /api/v1/openapi.json`) by
`python docs/generate_api_reference.py`; do not edit by hand. The same document is
browsable at `/api/v1/docs`. Every answer is JSON with `"status": "ok"` or, on
failure, the error envelope (`Error` below: {error_fields}) with the HTTP status of
the failure.

{description}
"""


def _type(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if "const" in schema:
        return f"`{schema['const']!r}`".replace("'", '"')
    if "enum" in schema:
        return " \\| ".join(f"`{choice}`" for choice in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    return " or ".join(kind) if isinstance(kind, list) else kind


def _fields(schema: dict) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | default |", "|---|---|---|---|"]
    for name, field in schema.get("properties", {}).items():
        default = f"`{field['default']}`" if "default" in field else ""
        rows.append(
            f"| `{name}` | {_type(field)} | {'yes' if name in required else ''} | {default} |"
        )
    return rows


def _answer(operation: dict) -> list[str]:
    content = operation["responses"]["200"]["content"]
    if "application/json" not in content:
        return ["Answer: " + ", ".join(f"`{kind}`" for kind in content) + "."]
    schema = content["application/json"]["schema"]
    if "allOf" in schema:  # the listings: one key, by the action in the path
        keys = [
            f"`{key}`: {_type(value)}"
            for choice in schema["allOf"][1]["anyOf"]
            for key, value in choice["properties"].items()
        ]
        return ["Answer: `status` and one of " + ", ".join(keys) + "."]
    fields = [
        f"`{name}`: {_type(field)}"
        for name, field in schema.get("properties", {}).items()
        if name != "status"
    ]
    return ["Answer: `status`" + ("".join(f", {field}" for field in fields)) + "."]


def _other_answers(operation: dict) -> list[str]:
    """The statuses an operation documents besides 200 and the default error envelope."""
    answers = [
        f"{status} ({response['description']})"
        for status, response in operation["responses"].items()
        if status not in ("200", "default")
    ]
    return ["Also answers " + ", ".join(answers) + ".\n"] if answers else []


def render(document: dict) -> str:
    """The reference as Markdown."""
    components = document["components"]["schemas"]
    error_fields = ", ".join(f"`{name}`" for name in components["Error"]["properties"])
    lines = [HEADER.format(error_fields=error_fields, description=document["info"]["description"])]
    for path, item in document["paths"].items():
        parameters = {p["name"]: p for p in item.get("parameters", [])}
        for method, operation in item.items():
            if method == "parameters":
                continue
            lines.append(f"## `{method.upper()} {path}`\n")
            lines.append(operation["summary"] + "\n")
            guard = "token" if operation["security"] else "no token"
            if operation.get("description"):
                guard += "; " + operation["description"].rstrip(".").lower()
            lines.append(f"Needs: {guard}.\n")
            choices = [
                f"`{name}`: " + _type(parameter["schema"])
                for name, parameter in parameters.items()
                if "enum" in parameter["schema"]
            ]
            if choices:
                lines.append("Path choices: " + "; ".join(choices) + ".\n")
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header":
                    text = parameter["description"]
                    lines.append(f"Header: `{parameter['name']}` (optional): {text}\n")
                else:
                    lines.append(f"Query: `{parameter['name']}` ({_type(parameter['schema'])}).\n")
            body = operation.get("requestBody")
            if body:
                name = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                optional = "" if body.get("required", False) else ", optional"
                lines.append(f"Body (`{name}`{optional}):\n")
                lines.extend(_fields(components[name]))
                lines.append("")
            lines.extend(_answer(operation))
            lines.append("")
            lines.extend(_other_answers(operation))
    lines.append("## Shapes\n")
    for name, schema in components.items():
        if schema.get("title"):  # a request body, shown with its operation
            continue
        lines.append(f"### {name}\n")
        lines.extend(_fields(schema))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def current_document() -> dict:
    """The document of an app with the default configuration, built without a server."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dispatcher import create_app
    from dispatcher.api.openapi import build_document

    settings = {
        "SQLALCHEMY_DATABASE_URI": "sqlite://",
        "SECRET_KEY": "-",
        "SECURITY_PASSWORD_SALT": "-",
    }
    app = create_app(settings)
    with app.app_context():
        return build_document(app)


def main(argv: list[str]) -> int:
    text = render(current_document())
    if "--check" in argv:
        if not REFERENCE.exists() or REFERENCE.read_text() != text:
            print(f"{REFERENCE} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text)
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
