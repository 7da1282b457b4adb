"""What every view shares: the base classes (token auth lives here), the envelope, and
the declarations of what a view takes and answers, which the OpenAPI document reads."""

import functools
from dataclasses import dataclass, field

from flask import current_app, jsonify, request
from flask.views import MethodView

from ..auth import roles_required
from ..auth import token_required as _token_required
from ..errors import InvalidRequestError
from ..jsonparsing import RefusedJSONError
from ..models import ADMIN, AGENT
from ..validation import validate
from .parameters import QueryParameter

CHANGE_ROLES = (AGENT, ADMIN)


def agent_required(view):
    """Only for role agent or admin (403 otherwise): whatever changes a cloud or an assignment."""
    return roles_required(*CHANGE_ROLES)(view)


def admin_required(view):
    """Only for role admin (403 otherwise): what mends the books behind the agents' backs."""
    return roles_required(ADMIN)(view)


def token_required(view):
    """A valid token, on a method of a view that is otherwise public."""
    guarded = _token_required(view)
    guarded.token_required = True  # read by the OpenAPI document
    return guarded


def accepts(schema, optional: bool = False):
    """Validate the JSON body with ``schema`` and hand it to the view as ``body``;
    ``optional``: no body at all is taken as ``{}``.

    The OpenAPI document takes the request schema from here: one source for both.
    """

    def decorate(view):
        @functools.wraps(view)
        def validated(*args, **kwargs):
            body = json_body()
            if body is None and optional:
                body = {}
            return view(*args, body=validate(schema, body), **kwargs)

        validated.request_schema = schema
        validated.body_optional = optional
        return validated

    return decorate


def query(**parameters: QueryParameter):
    """Read these query parameters and hand them to the view as keyword arguments
    (None where absent); the OpenAPI document lists them from here.

    :raises InvalidRequestError: a parameter's value is refused.
    """

    def decorate(view):
        @functools.wraps(view)
        def read(*args, **kwargs):
            values = {name: rule.parse(request.args.get(name)) for name, rule in parameters.items()}
            return view(*args, **values, **kwargs)

        read.query_parameters = parameters
        return read

    return decorate


@dataclass(frozen=True)
class Answer:
    """A view's ok answer: the fields beside ``status`` (types as in ``shapes``), those
    only some answers have, or alternatives (``variants``), and its content type."""

    fields: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)
    variants: list = field(default_factory=list)
    content_type: str = "application/json"
    accepted: bool = False  # also a 202 of the same shape: taken, to be done later
    also_as: tuple[str, ...] = ()  # other content types it may answer in, as text (CSV)


def answers(fields: dict | None = None, **declared):
    """Declare the view's ok answer (see ``Answer``) for the OpenAPI document."""

    def decorate(view):
        view.answer = Answer(fields or {}, **declared)
        return view

    return decorate


class PublicView(MethodView):
    """A view anyone may call: the root and the token endpoint."""

    init_every_request = False


class ApiView(PublicView):
    """A view that needs a valid token (header, query parameter or JSON key)."""

    decorators = [_token_required]


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
        return current_app.json.loads(data)
    except RefusedJSONError as exc:
        raise InvalidRequestError(str(exc)) from None
    except ValueError:  # UnicodeDecodeError too, and a body nested too deeply
        raise InvalidRequestError("Malformed JSON stream") from None
