"""The shapes of what the API answers, declared on the code that builds them.

A function that builds a dict of the API (``serializers.node_to_dict``) carries its
JSON Schema (``@describes``), and a view declares its answer in terms of those
functions (``api.base.answers``): the OpenAPI document is read from both, and no
other list of shapes exists.
"""

from dataclasses import dataclass, field

TEXT = {"type": "string"}
TEXT_OR_NULL = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
INTEGER_OR_NULL = {"type": ["integer", "null"]}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
OBJECT = {"type": "object"}
# An assignment's tags, {"project": "genomics"}; null: none.
TAGS_OR_NULL = {"type": ["object", "null"], "additionalProperties": TEXT}
ARRAY = {"type": "array"}
ANY: dict = {}


def const(value) -> dict:
    """Exactly ``value``."""
    return {"const": value}


def one_of(*values) -> dict:
    """One of ``values``."""
    return {"enum": list(values)}


@dataclass(frozen=True)
class Shape:
    """A named JSON object: its fields always present and those only sometimes there.

    A field's type is a JSON Schema dict, a function that carries a shape, a Shape,
    or ``ListOf`` one of those.
    """

    name: str
    required: dict
    optional: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    """A JSON array of ``item``."""

    item: object


def list_of(item) -> ListOf:
    """A JSON array of ``item`` (a schema, a shape, or a function that carries one)."""
    return ListOf(item)


def describes(name: str, required: dict, optional: dict | None = None):
    """Declare the shape, named ``name``, of the dict the decorated function returns."""

    def decorate(function):
        function.shape = Shape(name, required, optional or {})
        return function

    return decorate


def shape_of(value) -> Shape | None:
    """The shape ``value`` is or carries; None for a plain schema or a list."""
    if isinstance(value, Shape):
        return value
    return getattr(value, "shape", None)
