"""Request schemas (``schema`` library, over ``fields``) and the one function that applies
them; the OpenAPI document reads the same schemas (``fields.body_json_schema``)."""

import re

from schema import Optional, Schema, SchemaError, Use

from .clouds.groups import network
from .errors import InvalidRequestError
from .fields import (
    CheckedSchema,
    ClosedSchema,
    Field,
    Nullable,
    Tags,
    Text,
    boolean,
    number,
    whole_number,
)
from .jsonparsing import encodable

# The longest lease a request may ask for, in seconds (ten years): MAX_LEASE and a pool's
# max_lease cap it further; a larger number is a mistake or an attack.
LEASE_LONGEST = 10 * 365 * 24 * 3600

# The largest volume, in GB: above any cloud's offer (64 TiB), below a number that only
# a mistake or an attack sends.
VOLUME_SIZE_MAX = 65536

CREDENTIALS = Schema(
    # The password is only ever hashed: any length.
    {"username": Text("username"), "password": Text("password", longest=None)},
    name="credentials",
    ignore_extra_keys=True,
)


def _strings(field: str) -> Field:
    return Field(
        {"type": "object", "additionalProperties": {"type": "string"}},
        dict,
        lambda mapping: all(
            isinstance(k, str) and isinstance(v, str) and encodable(k) and encodable(v)
            for k, v in mapping.items()
        ),
        error=f"{field}: object of string values",
    )


START = Schema(
    {
        "name": Text("name"),
        "image": Text("image"),
        "size": Text("size"),
        Optional("keyname"): Text("keyname"),
        Optional("metadata"): _strings("metadata"),
        Optional("location"): Text("location"),
        Optional("vm_type"): Text("vm_type"),
        Optional("security_groups"): Field(
            {"type": "array", "items": Text("security_groups").json, "minItems": 1},
            [Text("security_groups")],
            len,
            error="security_groups: list of group names",
        ),
    },
    name="vm_start",
    ignore_extra_keys=True,
)


def _one_node(body: dict) -> str | None:
    if "node" not in body and "hostname" not in body:
        return "no valid node id nor hostname here"  # the original's words
    if "node" in body and "hostname" in body:
        return "node, hostname: give one of them, not both"
    return None


# Exactly one of node and hostname, as _one_node checks.
ONE_NODE = {"oneOf": [{"required": ["node"]}, {"required": ["hostname"]}]}

NODE_REFERENCE = CheckedSchema(
    {Optional("node"): Text("node"), Optional("hostname"): Text("hostname")},
    name="node_reference",
    ignore_extra_keys=True,
    check=_one_node,
    check_json=ONE_NODE,
)


_EMULATE = boolean("emulate")

STOP = CheckedSchema(
    {
        Optional("node"): Text("node"),
        Optional("hostname"): Text("hostname"),
        # Destroy a VM even while it is assigned to someone.
        Optional("force", default=False): boolean("force"),
    },
    name="vm_stop",
    ignore_extra_keys=True,
    check=_one_node,
    check_json=ONE_NODE,
)


def _at_most_one_node(body: dict) -> str | None:
    if "node" in body and "hostname" in body:
        return "node, hostname: give one of them, not both"
    return None


# Without node and hostname, an assign takes a free VM of the warm pool of its vm_type.
ASSIGN = CheckedSchema(
    {
        Optional("node"): Text("node"),
        Optional("hostname"): Text("hostname"),
        "user": Text("user"),
        "vm_type": Text("vm_type"),
        Optional("lease"): whole_number("lease", 1, LEASE_LONGEST, unit=" of seconds"),
        Optional("tags"): Tags(),
        Optional("emulate", default=False): _EMULATE,
    },
    name="vm_assign",
    ignore_extra_keys=True,
    check=_at_most_one_node,
    check_json={"not": {"required": ["node", "hostname"]}},
)

RELEASE = CheckedSchema(
    {
        Optional("node"): Text("node"),
        Optional("hostname"): Text("hostname"),
        Optional("emulate", default=False): _EMULATE,
    },
    name="vm_release",
    ignore_extra_keys=True,
    check=_one_node,
    check_json=ONE_NODE,
)

EXTEND = CheckedSchema(
    {
        Optional("node"): Text("node"),
        Optional("hostname"): Text("hostname"),
        "lease": whole_number("lease", 1, LEASE_LONGEST, unit=" of seconds"),
        # Tags replace the assignment's; without them it keeps its own.
        Optional("tags"): Tags(),
    },
    name="vm_extend",
    ignore_extra_keys=True,
    check=_one_node,
    check_json=ONE_NODE,
)


# A reconcile is a dry run unless it says apply; foreign orphans are destroyed only if asked.
RECONCILE = Schema(
    {
        Optional("apply", default=False): boolean("apply"),
        Optional("destroy_orphans", default=False): boolean("destroy_orphans"),
    },
    name="reconcile",
    ignore_extra_keys=True,
)

PROTOCOLS = ("tcp", "udp", "icmp")


def _any_case(word: str) -> str:
    # A pattern for `word` in any case, as the protocol is read: JSON Schema's regular
    # expressions have no flag for it.
    return "".join(f"[{letter.lower()}{letter.upper()}]" for letter in word)


def _port_range(body: dict) -> str | None:
    if body["protocol"] == "icmp":
        # Clouds read an ICMP rule's ports as the ICMP type and code: no range.
        return None if "to_port" in body else "to_port: the ICMP code, needed with icmp"
    if body.get("to_port", body["from_port"]) < body["from_port"]:
        return "to_port: not below from_port"
    return None


PORT_RULE = CheckedSchema(
    {
        "group": Text("group"),
        Optional("protocol", default="tcp"): Field(
            {"type": "string", "pattern": f"^({'|'.join(map(_any_case, PROTOCOLS))})$"},
            str,
            Use(str.lower),
            lambda protocol: protocol in PROTOCOLS,
            error="protocol: tcp, udp or icmp",
        ),
        "from_port": whole_number("from_port", 0, 65535),
        Optional("to_port"): whole_number("to_port", 0, 65535),
        Optional("cidr", default="0.0.0.0/0"): Field(
            {"type": "string", "description": "an IPv4 or IPv6 network, like 10.0.0.0/8"},
            str,
            Use(network),
            error="cidr: an IPv4 or IPv6 network, like 10.0.0.0/8",
        ),
    },
    name="port_rule",
    ignore_extra_keys=True,
    check=_port_range,
    check_json={
        "description": "to_port, not below from_port, defaults to from_port; with icmp the "
        "ports are the ICMP type and code, and to_port is needed",
        "if": {
            "properties": {"protocol": {"pattern": f"^{_any_case('icmp')}$"}},
            "required": ["protocol"],
        },
        "then": {"required": ["to_port"]},
    },
)

SECURITY_GROUP = Schema(
    {
        "name": Text("name"),
        Optional("description", default=""): Field(
            {"type": "string"}, str, encodable, error="description: string"
        ),
    },
    name="security_group",
    ignore_extra_keys=True,
)

GROUP_REFERENCE = Schema({"group": Text("group")}, name="group_reference", ignore_extra_keys=True)

VOLUME = Schema(
    {
        "name": Text("name"),
        "size": whole_number("size", 1, VOLUME_SIZE_MAX, unit=" of GB"),
        Optional("location"): Text("location"),
    },
    name="volume",
    ignore_extra_keys=True,
)

VOLUME_REFERENCE = Schema(
    {"volume": Text("volume")}, name="volume_reference", ignore_extra_keys=True
)

VOLUME_ATTACHMENT = CheckedSchema(
    {
        "volume": Text("volume"),
        Optional("node"): Text("node"),
        Optional("hostname"): Text("hostname"),
        Optional("device"): Text("device"),
    },
    name="volume_attachment",
    ignore_extra_keys=True,
    check=_one_node,
    check_json=ONE_NODE,
)


# The most a quota may allow of VMs at once and of VM-hours in a period: beyond any pool,
# below a number that only a mistake or an attack sends.
QUOTA_VMS_MOST = 1_000_000
QUOTA_HOURS_MOST = 1_000_000_000

# What a quota rule may limit; a key left out is taken from the next rule, a null one
# means no limit. ``period`` goes with max_vm_hours (a day if no rule gives one).
QUOTA_LIMITS = {
    Optional("max_vms"): Nullable(whole_number("max_vms", 0, QUOTA_VMS_MOST)),
    Optional("max_vm_hours"): Nullable(number("max_vm_hours", 0, QUOTA_HOURS_MOST)),
    Optional("period"): whole_number("period", 60, LEASE_LONGEST, unit=" of seconds"),
    Optional("max_lease"): Nullable(
        whole_number("max_lease", 1, LEASE_LONGEST, unit=" of seconds")
    ),
    Optional("pools"): Nullable(
        Field(
            {"type": "array", "items": Text("pools").json},
            [Text("pools")],
            error="pools: list of pool names",
        )
    ),
}

# A quota rule an admin sets (PUT /api/v1/quotas/...), for one pool if it names one.
QUOTA = ClosedSchema(
    {
        Optional("pool"): Text("pool", longest=80),
        **QUOTA_LIMITS,
        Optional("auth_token"): Text("auth_token", longest=None),
    },
    name="quota",
)


# The largest size an admin may give a pool at runtime: beyond any cloud account, below a
# number that only a mistake or an attack sends.
POOL_SIZE_MOST = 10_000
POOL_OVERRIDE_FIELDS = ("min_ready", "max_total", "paused", "draining")


def _some_change(body: dict) -> str | None:
    if not any(name in body for name in POOL_OVERRIDE_FIELDS):
        return f"empty body: give one or more of {', '.join(POOL_OVERRIDE_FIELDS)}"
    return None


# An admin's change of a warm pool (PATCH /api/v1/pools/<name>): a field left out is kept
# as it was, a null size goes back to the configured one.
POOL_OVERRIDE = ClosedSchema(
    {
        Optional("min_ready"): Nullable(whole_number("min_ready", 0, POOL_SIZE_MOST)),
        Optional("max_total"): Nullable(whole_number("max_total", 1, POOL_SIZE_MOST)),
        Optional("paused"): boolean("paused"),
        Optional("draining"): boolean("draining"),
        Optional("auth_token"): Text("auth_token", longest=None),
    },
    name="pool_override",
    check=_some_change,
    check_json={"anyOf": [{"required": [name]} for name in POOL_OVERRIDE_FIELDS]},
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


# The most VMs of one type a request may name; REQUEST_MAX_VMS and the pools' max_total
# bound them further.
REQUEST_VMS_MOST = POOL_SIZE_MOST
_POOL_NAME_JSON = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"}


class _RequestedVMs:
    """``vms`` of a request: a non-empty object of vm_types (pool names) to counts."""

    json = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 20,
        "propertyNames": _POOL_NAME_JSON,
        "additionalProperties": {"type": "integer", "minimum": 1, "maximum": REQUEST_VMS_MOST},
    }
    _count = whole_number("vms", 1, REQUEST_VMS_MOST)
    _name = re.compile(_POOL_NAME_JSON["pattern"])

    def validate(self, data, **kwargs):
        if not isinstance(data, dict) or not data:
            raise SchemaError(None, 'vms: an object of vm_types to counts, like {"web": 2}')
        if len(data) > 20:
            raise SchemaError(None, "vms: at most 20 vm_types")
        checked = {}
        for name, count in data.items():
            if not self._name.match(name):
                raise SchemaError(None, "vms: each vm_type a pool name (letters, digits, _.-)")
            try:
                checked[name] = self._count.validate(count)
            except SchemaError:
                raise SchemaError(
                    None,
                    f"vms: the count of each vm_type a whole number from 1 to {REQUEST_VMS_MOST}",
                ) from None
        return checked


_WEBHOOK_URL = re.compile(r"^https?://[^\s\x00]+$")

# A request for VMs that waits in line (POST /api/v1/requests).
REQUEST = ClosedSchema(
    {
        "vms": _RequestedVMs(),
        "user": Text("user"),
        Optional("lease"): whole_number("lease", 1, LEASE_LONGEST, unit=" of seconds"),
        Optional("priority"): whole_number("priority", 1, 3),
        Optional("expires_in"): whole_number("expires_in", 1, LEASE_LONGEST, unit=" of seconds"),
        Optional("cloud"): Text("cloud"),
        Optional("webhook_url"): Field(
            {"type": "string", "pattern": "^https?://[^\\s\\u0000]+$", "maxLength": 2000},
            str,
            lambda url: len(url) <= 2000 and _WEBHOOK_URL.match(url) is not None,
            encodable,
            error="webhook_url: an http:// or https:// URL of at most 2000 characters",
        ),
        # Put on each VM the request is handed.
        Optional("tags"): Tags(),
        Optional("auth_token"): Text("auth_token", longest=None),
    },
    name="vm_request",
)
