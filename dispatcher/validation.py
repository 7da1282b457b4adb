"""Request schemas (``schema`` library) and the one function that applies them."""

from schema import And, Optional, Schema, SchemaError

from .errors import InvalidRequestError


def _text(field: str):
    return And(str, len, error=f"{field}: non-empty string")


CREDENTIALS = Schema(
    {"username": _text("username"), "password": _text("password")},
    name="credentials",
    ignore_extra_keys=True,
)


def _strings(field: str):
    return And(
        dict,
        lambda mapping: all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()),
        error=f"{field}: object of string values",
    )


START = Schema(
    {
        "name": _text("name"),
        "image": _text("image"),
        "size": _text("size"),
        Optional("keyname"): _text("keyname"),
        Optional("metadata"): _strings("metadata"),
        Optional("location"): _text("location"),
        Optional("vm_type"): _text("vm_type"),
    },
    name="vm_start",
    ignore_extra_keys=True,
)


class NodeReferenceSchema(Schema):
    """A body naming one node: its cloud id (``node``) or its name (``hostname``), not both."""

    def validate(self, data, **kwargs):
        data = super().validate(data, **kwargs)
        if not isinstance(self.schema, dict):  # schema validates the values with this class too
            return data
        if "node" not in data and "hostname" not in data:
            raise SchemaError(None, "no valid node id nor hostname here")  # the original's words
        if "node" in data and "hostname" in data:
            raise SchemaError(None, "node, hostname: give one of them, not both")
        return data


NODE_REFERENCE = NodeReferenceSchema(
    {Optional("node"): _text("node"), Optional("hostname"): _text("hostname")},
    name="node_reference",
    ignore_extra_keys=True,
)


_EMULATE = And(bool, error="emulate: true or false")

ASSIGN = NodeReferenceSchema(
    {
        Optional("node"): _text("node"),
        Optional("hostname"): _text("hostname"),
        "user": _text("user"),
        "vm_type": _text("vm_type"),
        Optional("emulate", default=False): _EMULATE,
    },
    name="vm_assign",
    ignore_extra_keys=True,
)

RELEASE = NodeReferenceSchema(
    {
        Optional("node"): _text("node"),
        Optional("hostname"): _text("hostname"),
        Optional("emulate", default=False): _EMULATE,
    },
    name="vm_release",
    ignore_extra_keys=True,
)


def validate(schema: Schema, body) -> dict:
    """Return ``body`` validated by ``schema``.

    :raises InvalidRequestError: the body is not an object or breaks the schema; the
        message names the field and never repeats the value (it may be a password).
    """
    if not isinstance(body, dict):
        raise InvalidRequestError("Malformed JSON stream: the body must be a JSON object")
    try:
        return schema.validate(body)
    except SchemaError as exc:
        raise InvalidRequestError(_field_message(exc)) from None


def limit(value: str | None, default: int, maximum: int) -> int:
    """A ``limit`` query parameter: a whole number from 1 to ``maximum``.

    :raises InvalidRequestError: anything else.
    """
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise InvalidRequestError(f"limit: a whole number from 1 to {maximum}")
    return int(value)


def _field_message(exc: SchemaError) -> str:
    # The schemas' own messages name the field; of schema's automatic ones only the
    # missing-key message is passed on (it names keys, not values). Anything else is
    # reduced to a generic line rather than risk echoing a value.
    custom = [message for message in exc.errors if message]
    if custom:
        return custom[0]
    for message in exc.autos:
        if message and "Missing key" in message:
            return "missing field" + message.split("Missing key", 1)[1]
    return "the body does not match the expected fields"
