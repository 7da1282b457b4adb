"""What every view shares: the base class (authentication goes here) and the envelope."""

import json

from flask import jsonify, request
from flask.views import MethodView

from ..errors import InvalidRequestError


class ApiView(MethodView):
    """Base of every API view."""

    init_every_request = False


def ok(**fields):
    """The success envelope: ``{"status": "ok", ...fields}``."""
    return jsonify({"status": "ok", **fields})


def json_body() -> dict | list | None:
    """The request's JSON body whatever its content type; None when there is none.

    :raises InvalidRequestError: the body is not JSON.
    """
    data = request.get_data(cache=True)
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("Malformed JSON stream") from None
