"""Query parameters: how each is read, and its schema for the OpenAPI document."""

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from schema import SchemaError

from .. import fields
from ..errors import InvalidRequestError
from ..fields import Text


@dataclass(frozen=True)
class QueryParameter:
    """A query parameter: ``parse`` turns its text (None when absent) into the view's
    argument or raises InvalidRequestError; ``schema`` describes it in OpenAPI."""

    schema: dict
    parse: Callable[[str | None], object]


def whole_number(name: str, maximum: int, default: int | None = None) -> QueryParameter:
    """A whole number from 1 to ``maximum`` (``default`` when absent, which the view
    applies: it is None)."""

    def parse(value: str | None) -> int | None:
        if value is None:
            return None
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses. Their
        # count is checked before int() reads them: it refuses more than 4,300 digits.
        significant = value.lstrip("0")
        digits = value.isascii() and value.isdigit() and len(significant) <= len(str(maximum))
        if not digits or not 1 <= int(significant or "0") <= maximum:
            raise InvalidRequestError(f"{name}: a whole number from 1 to {maximum}")
        return int(significant)

    schema = {"type": "integer", "minimum": 1, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    return QueryParameter(schema, parse)


def limit(maximum: int, default: int) -> QueryParameter:
    """A ``limit`` query parameter: how many items at most."""
    return whole_number("limit", maximum, default)


def text(name: str) -> QueryParameter:
    """A text query parameter, as a body's text field is checked (None when absent)."""

    def parse(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return Text(name).validate(value)
        except SchemaError as exc:
            raise InvalidRequestError(exc.code) from None

    return QueryParameter(Text(name).json, parse)


def choice(name: str, values: tuple[str, ...]) -> QueryParameter:
    """One of ``values`` (None when absent); anything else is refused, naming them."""

    def parse(value: str | None) -> str | None:
        if value is not None and value not in values:
            raise InvalidRequestError(f"{name}: one of {', '.join(values)}")
        return value

    return QueryParameter({"type": "string", "enum": list(values)}, parse)


# The id of the last item of the page before.
MARKER = text("marker")


FLAG_VALUES = {
    "": False,
    "0": False,
    "false": False,
    "no": False,
    "1": True,
    "true": True,
    "yes": True,
}


def flag(name: str) -> QueryParameter:
    """A yes-or-no switch: absent, empty, 0, false or no is off; 1, true or yes is on.

    Anything else is refused rather than taken for a yes.
    """

    def parse(value: str | None) -> bool:
        if value is None:
            return False
        if value not in FLAG_VALUES:
            raise InvalidRequestError(f"{name}: one of 0, 1, false, true, no, yes")
        return FLAG_VALUES[value]

    return QueryParameter({"type": "string", "enum": list(FLAG_VALUES), "default": "0"}, parse)


def moment(name: str) -> QueryParameter:
    """A moment in ISO 8601 (``fields.moment``), as an aware datetime in UTC (None when
    absent)."""

    def parse(value: str | None) -> datetime.datetime | None:
        if value is None:
            return None
        found = fields.moment(value)
        if found is None:
            raise InvalidRequestError(f"{name}: {fields.MOMENT_FORMAT}")
        return found

    schema = {"type": "string", "format": "date-time", "maxLength": fields.MOMENT_MOST}
    return QueryParameter(schema, parse)


def parsed(parse: Callable[[str], object], schema: dict) -> QueryParameter:
    """A parameter ``parse`` reads (None when absent); it raises InvalidRequestError."""
    return QueryParameter(schema, lambda value: None if value is None else parse(value))
