"""The building blocks of the request schemas: each rule validates and documents itself.

A ``schema`` validator alone says nothing the OpenAPI document can use (the library's
``json_schema()`` sees ``str`` but neither a length nor a range), so each field here
carries the JSON Schema of the very rule it checks, and ``body_json_schema`` builds a
body's document from them: what the document allows is what the service accepts.
"""

import datetime
import re

from schema import And, Optional, Schema, SchemaError, Use

from .jsonparsing import encodable

# The longest text a field may hold: the database's columns for hostnames, users, ids
# and the like hold 255 characters. PostgreSQL refuses longer text, and NUL in any text.
TEXT_MAX = 255


class Field:
    """A ``schema`` validator (``validators`` in a row, ``error`` when one fails) and the
    JSON Schema ``json`` that says the same."""

    def __init__(self, json: dict, *validators, error: str):
        self.json = json
        self._validator = And(*validators, error=error)

    def validate(self, data, **kwargs):
        """Return ``data`` as the validators leave it, or raise their SchemaError."""
        return self._validator.validate(data, **kwargs)


class Text:
    """A non-empty string of valid Unicode without NUL, of at most ``longest`` characters
    (None: any length).

    Its message names the field and the rule broken, never the value.
    """

    def __init__(self, field: str, longest: int | None = TEXT_MAX):
        self.field = field
        self.longest = longest
        self.json = {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]*$"}
        if longest is not None:
            self.json["maxLength"] = longest

    def validate(self, data, **kwargs):
        """Return ``data``, or raise SchemaError naming the rule it breaks."""
        fault = text_fault(data, self.longest)
        if fault is None:
            return data
        raise SchemaError(None, f"{self.field}: {fault}")


def text_fault(data, longest: int | None, empty: bool = False) -> str | None:
    """The rule ``data`` breaks as a text of valid Unicode without NUL, of at most
    ``longest`` characters (None: any length), empty only if ``empty``; None if none."""
    if not isinstance(data, str):
        return "a string" if empty else "non-empty string"
    if not data and not empty:
        return "non-empty string"
    if longest is not None and len(data) > longest:
        return f"at most {longest} characters"
    if "\x00" in data:
        return "no NUL character"
    if not encodable(data):
        return "not valid Unicode"
    return None


# A tag's key: short, of letters, digits and _ - . : / (a pool's require_tags names them).
TAG_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
TAG_KEY_JSON = {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,64}$"}
# The longest value of a tag; any text, the empty one too, without NUL.
TAG_VALUE_MAX = 256
# The most keys tags may have, whatever TAG_MAX says: the setting may lower it only.
TAGS_MOST = 100


def tag_key_error(key) -> str | None:
    """What is wrong with ``key`` as a tag's key, or None."""
    if isinstance(key, str) and TAG_KEY.fullmatch(key):
        return None
    return "1 to 64 letters, digits, '_', '-', '.', ':' or '/'"


class Tags:
    """``tags``: an object of at most TAGS_MOST short keys (``TAG_KEY``) to texts of at
    most TAG_VALUE_MAX characters without NUL. The message names the key at fault (cut to
    40 characters), never a value; TAG_MAX, the setting, is the use case's to apply."""

    json = {
        "type": "object",
        "maxProperties": TAGS_MOST,
        "propertyNames": TAG_KEY_JSON,
        "additionalProperties": {
            "type": "string",
            "maxLength": TAG_VALUE_MAX,
            "pattern": "^[^\\u0000]*$",
        },
        "description": 'labels of the assignment, like {"project": "genomics"}: at most '
        "TAG_MAX keys (10 unless configured)",
    }

    def validate(self, data, **kwargs):
        """Return ``data``, or raise SchemaError naming the key at fault."""
        if not isinstance(data, dict):
            raise SchemaError(None, 'tags: an object of texts, like {"project": "genomics"}')
        if len(data) > TAGS_MOST:
            raise SchemaError(None, f"tags: at most {TAGS_MOST} keys")
        for key, value in data.items():
            wrong = tag_key_error(key)
            if wrong is not None:
                raise SchemaError(None, f"tags: key {str(key)[:40]!r} must be {wrong}")
            fault = text_fault(value, TAG_VALUE_MAX, empty=True)
            if fault is not None:
                raise SchemaError(None, f"tags: {key!r}: {fault}")
        return dict(data)


def boolean(field: str) -> Field:
    """true or false."""
    return Field({"type": "boolean"}, bool, error=f"{field}: true or false")


def _whole(value) -> bool:
    # JSON has numbers, not integers: 5.0 is the whole number 5 (as JSON Schema reads
    # it); true and false are not numbers.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or value.is_integer()


def number(field: str, lowest: float, highest: float, unit: str = "") -> Field:
    """A number from ``lowest`` to ``highest``, fractions allowed, given as a float."""
    return Field(
        {"type": "number", "minimum": lowest, "maximum": highest},
        lambda value: not isinstance(value, bool) and isinstance(value, int | float),
        lambda value: lowest <= value <= highest,  # NaN and infinities fail here
        Use(float),
        error=f"{field}: a number{unit} from {lowest} to {highest}",
    )


class Nullable:
    """``field``, or null (which says: no limit)."""

    def __init__(self, field):
        self.field = field
        self.json = {"anyOf": [field.json, {"type": "null"}]}

    def validate(self, data, **kwargs):
        """Return None for null, else what ``field`` makes of ``data``."""
        return None if data is None else self.field.validate(data, **kwargs)


def whole_number(field: str, lowest: int, highest: int, unit: str = "") -> Field:
    """A whole number from ``lowest`` to ``highest``, given as an int."""
    return Field(
        {"type": "integer", "minimum": lowest, "maximum": highest},
        _whole,
        lambda number: lowest <= number <= highest,
        Use(int),
        error=f"{field}: a whole number{unit} from {lowest} to {highest}",
    )


class CheckedSchema(Schema):
    """A schema of a body with a check across its fields, run once on the whole body.

    ``check`` returns the message of what is wrong, or None; ``check_json`` is the JSON
    Schema of the same rule, merged into the body's document.
    """

    def __init__(self, *args, check=None, check_json: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.check = check
        self.check_json = check_json or {}

    def validate(self, data, **kwargs):
        data = super().validate(data, **kwargs)
        # schema validates the values with this class too, without the check
        message = self.check(data) if self.check and isinstance(self.schema, dict) else None
        if message:
            raise SchemaError(None, message)
        return data


class ClosedSchema(CheckedSchema):
    """A schema of a body that refuses a field it does not know, naming it (the token's
    ``auth_token`` key aside, which the schema lists)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("ignore_extra_keys", True)  # what it does not know it refuses first
        super().__init__(*args, **kwargs)
        self.check_json = {**self.check_json, "additionalProperties": False}

    def validate(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(self.schema, dict):
            known = {key.schema if isinstance(key, Optional) else key for key in self.schema}
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                fields = ", ".join(sorted(known))
                raise SchemaError(None, f"{unknown[0][:40]}: not a field here ({fields})")
        return super().validate(data, **kwargs)


def body_json_schema(schema: Schema) -> dict:
    """The JSON Schema of a request body from the fields that validate it.

    :raises TypeError: a field that does not document itself.
    """
    properties, required = {}, []
    for key, value in schema.schema.items():
        name = key.schema if isinstance(key, Optional) else key
        json = getattr(value, "json", None)
        if json is None:
            raise TypeError(f"{schema.name}.{name}: a field without its JSON Schema")
        properties[name] = dict(json)
        if hasattr(key, "default"):
            properties[name]["default"] = key.default
        if not isinstance(key, Optional):
            required.append(name)
    document = {"title": schema.name, "type": "object", "properties": properties}
    if required:
        document["required"] = required
    return {**document, **getattr(schema, "check_json", {})}


# The longest moment a parameter may give: "2026-12-01T09:00:00.000000+00:00" and room.
MOMENT_MOST = 40
MOMENT_FORMAT = "a moment in ISO 8601, like 2026-12-01 or 2026-12-01T09:00:00Z"


def moment(text: str) -> datetime.datetime | None:
    """``text`` as a moment in ISO 8601 (``2026-12-01``, ``2026-12-01T09:00:00Z``, with an
    offset or without, which is UTC), in UTC; None if it is not one."""
    if len(text) > MOMENT_MOST:
        return None
    try:
        found = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if found.tzinfo is None:
        found = found.replace(tzinfo=datetime.UTC)
    return found.astimezone(datetime.UTC)
