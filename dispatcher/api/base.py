"""What every view shares: the base classes (token auth lives here) and the envelope."""

import json

from flask import jsonify, request
from flask.views import MethodView
from flask_security import auth_required, roles_accepted

from ..errors import InvalidRequestError
from ..models import ADMIN, AGENT

# Anything that changes a cloud or an assignment: on top of a valid token.
agent_required = roles_accepted(AGENT, ADMIN)


class PublicView(MethodView):
    """A view anyone may call: the root and the token endpoint."""

    init_every_request = False


class ApiView(PublicView):
    """A view that needs a valid token (header, query parameter or JSON key)."""

    decorators = [auth_required("token")]


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
