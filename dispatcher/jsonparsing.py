"""The JSON the dispatcher reads: strict JSON only, text that every layer can encode."""

import json

from flask.json.provider import DefaultJSONProvider


class RefusedJSONError(ValueError):
    """A body that parses, but not as strict JSON of valid text; the message says why
    (it names a field, never its value)."""


def _constant(name: str):
    # Python's json reads NaN, Infinity and -Infinity, which JSON does not have.
    raise RefusedJSONError(f"Malformed JSON stream: {name} is not JSON")


def encodable(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8."""
    # JSON's "\ud800" decodes to a lone surrogate, which no database driver, password
    # hasher or HTTP client can encode.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_text(value, path: str = "") -> None:
    """Refuse a lone surrogate anywhere in ``value``, naming where it is."""
    if isinstance(value, str):
        if not encodable(value):
            raise RefusedJSONError(f"{path or 'the body'}: not valid Unicode")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not encodable(key):
                raise RefusedJSONError("Malformed JSON stream: a key is not valid Unicode")
            _check_text(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{path}[{index}]")


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, reading strict JSON only; what cannot be read is a ValueError."""

    def loads(self, s, **kwargs):
        """Parse ``s``; a ValueError for what is not strict JSON of valid text, whatever
        its depth (RefusedJSONError where the reason can be told)."""
        try:
            value = json.loads(s, parse_constant=_constant, **kwargs)
        except RecursionError:
            # Werkzeug's get_json (used by Flask-Security-Too for the auth_token key)
            # treats only a ValueError as malformed JSON.
            raise ValueError("JSON nested too deeply") from None
        try:
            _check_text(value)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        return value
