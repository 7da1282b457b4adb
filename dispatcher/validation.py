"""Request schemas (``schema`` library) and the one function that applies them."""

from schema import And, Optional, Schema, SchemaError, Use

from .clouds.groups import network
from .errors import InvalidRequestError
from .jsonparsing import encodable

# The longest text a field may hold: the database's columns for hostnames, users, ids
# and the like hold 255 characters. PostgreSQL refuses longer text, and NUL in any text.
TEXT_MAX = 255


class Text:
    """A ``schema`` validator: a non-empty string of valid Unicode without NUL, of at most
    ``longest`` characters (None: any length).

    Its message names the field and the rule broken, never the value.
    """

    def __init__(self, field: str, longest: int | None = TEXT_MAX):
        self.field = field
        self.longest = longest

    def validate(self, data, **kwargs):
        """Return ``data``, or raise SchemaError naming the rule it breaks."""
        if not isinstance(data, str) or not data:
            message = "non-empty string"
        elif self.longest is not None and len(data) > self.longest:
            message = f"at most {self.longest} characters"
        elif "\x00" in data:
            message = "no NUL character"
        elif not encodable(data):
            message = "not valid Unicode"
        else:
            return data
        raise SchemaError(None, f"{self.field}: {message}")


def _text(field: str, longest: int | None = TEXT_MAX):
    # `str` after Text only for json_schema(), which cannot read Text.
    return And(Text(field, longest), str)


CREDENTIALS = Schema(
    # The password is only ever hashed: any length.
    {"username": _text("username"), "password": _text("password", longest=None)},
    name="credentials",
    ignore_extra_keys=True,
)


def _strings(field: str):
    return And(
        dict,
        lambda mapping: all(
            isinstance(k, str) and isinstance(v, str) and encodable(k) and encodable(v)
            for k, v in mapping.items()
        ),
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
        Optional("security_groups"): And(
            [_text("security_groups")], len, error="security_groups: list of group names"
        ),
    },
    name="vm_start",
    ignore_extra_keys=True,
)


class CheckedSchema(Schema):
    """A schema of a body with a check across its fields, run once on the whole body.

    ``check`` returns the message of what is wrong, or None.
    """

    def __init__(self, *args, check=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.check = check

    def validate(self, data, **kwargs):
        data = super().validate(data, **kwargs)
        # schema validates the values with this class too, without the check
        message = self.check(data) if self.check and isinstance(self.schema, dict) else None
        if message:
            raise SchemaError(None, message)
        return data


def _one_node(body: dict) -> str | None:
    if "node" not in body and "hostname" not in body:
        return "no valid node id nor hostname here"  # the original's words
    if "node" in body and "hostname" in body:
        return "node, hostname: give one of them, not both"
    return None


NODE_REFERENCE = CheckedSchema(
    {Optional("node"): _text("node"), Optional("hostname"): _text("hostname")},
    name="node_reference",
    ignore_extra_keys=True,
    check=_one_node,
)


_EMULATE = And(bool, error="emulate: true or false")

STOP = CheckedSchema(
    {
        Optional("node"): _text("node"),
        Optional("hostname"): _text("hostname"),
        # Destroy a VM even while it is assigned to someone.
        Optional("force", default=False): And(bool, error="force: true or false"),
    },
    name="vm_stop",
    ignore_extra_keys=True,
    check=_one_node,
)

ASSIGN = CheckedSchema(
    {
        Optional("node"): _text("node"),
        Optional("hostname"): _text("hostname"),
        "user": _text("user"),
        "vm_type": _text("vm_type"),
        Optional("emulate", default=False): _EMULATE,
    },
    name="vm_assign",
    ignore_extra_keys=True,
    check=_one_node,
)

RELEASE = CheckedSchema(
    {
        Optional("node"): _text("node"),
        Optional("hostname"): _text("hostname"),
        Optional("emulate", default=False): _EMULATE,
    },
    name="vm_release",
    ignore_extra_keys=True,
    check=_one_node,
)


def _port(field: str):
    return And(
        int,
        lambda port: not isinstance(port, bool) and 0 <= port <= 65535,
        error=f"{field}: a whole number from 0 to 65535",
    )


def _port_range(body: dict) -> str | None:
    if body["protocol"] == "icmp":
        # Clouds read an ICMP rule's ports as the ICMP type and code: no range.
        return None if "to_port" in body else "to_port: the ICMP code, needed with icmp"
    if body.get("to_port", body["from_port"]) < body["from_port"]:
        return "to_port: not below from_port"
    return None


PORT_RULE = CheckedSchema(
    {
        "group": _text("group"),
        Optional("protocol", default="tcp"): And(
            str,
            Use(str.lower),
            lambda p: p in ("tcp", "udp", "icmp"),
            error="protocol: tcp, udp or icmp",
        ),
        "from_port": _port("from_port"),
        Optional("to_port"): _port("to_port"),
        Optional("cidr", default="0.0.0.0/0"): And(
            str, Use(network), error="cidr: an IPv4 or IPv6 network, like 10.0.0.0/8"
        ),
    },
    name="port_rule",
    ignore_extra_keys=True,
    check=_port_range,
)

SECURITY_GROUP = Schema(
    {
        "name": _text("name"),
        Optional("description", default=""): And(str, encodable, error="description: string"),
    },
    name="security_group",
    ignore_extra_keys=True,
)

VOLUME = Schema(
    {
        "name": _text("name"),
        "size": And(
            int,
            lambda size: not isinstance(size, bool) and size > 0,
            error="size: a whole number of GB above 0",
        ),
        Optional("location"): _text("location"),
    },
    name="volume",
    ignore_extra_keys=True,
)

VOLUME_REFERENCE = Schema(
    {"volume": _text("volume")}, name="volume_reference", ignore_extra_keys=True
)

VOLUME_ATTACHMENT = CheckedSchema(
    {
        "volume": _text("volume"),
        Optional("node"): _text("node"),
        Optional("hostname"): _text("hostname"),
        Optional("device"): _text("device"),
    },
    name="volume_attachment",
    ignore_extra_keys=True,
    check=_one_node,
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
