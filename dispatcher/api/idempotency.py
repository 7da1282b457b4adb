"""The Idempotency-Key header of the requests that change something: ``@idempotent``.

A request with the header runs once per caller and key; its repeats within
``IDEMPOTENCY_TTL`` get its answer again, marked ``Idempotent-Replayed: true``, without
running. The rows are ``dispatcher.idempotency``'s.
"""

import functools

from flask import current_app, request
from flask_security import current_user

from .. import idempotency
from ..errors import InvalidRequestError
from ..extensions import db

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_LENGTH_MAX = 255  # IdempotencyKey.key
# What the OpenAPI document says of the header and of the answers it brings.
HEADER_DESCRIPTION = (
    f"makes a retry safe: a repeat with the same key (1 to {KEY_LENGTH_MAX} printable ASCII "
    'characters, bare or quoted as "abc", new for each new request) gets the first answer '
    f"again, marked {REPLAYED_HEADER}: true, without running again; answers of 500 and more "
    "are not kept."
)
IN_USE_DESCRIPTION = (
    "the request with this Idempotency-Key still runs: ask again after Retry-After seconds"
)
REUSED_DESCRIPTION = "the Idempotency-Key was used with another request"
REPLAYED_DESCRIPTION = "true: the stored answer of the first request with this Idempotency-Key"


def parse_key(value: str) -> str:
    """The key a header value names: a bare token, or a quoted string (``"abc"`` is ``abc``,
    with ``\\"`` and ``\\\\`` inside).

    :raises InvalidRequestError: empty, longer than KEY_LENGTH_MAX, a character that is not
        printable ASCII, or a quoted string that is not well formed.
    """
    key = value.strip(" \t")
    if key.startswith('"'):
        key = _unquote(key)
    if not key:
        raise InvalidRequestError(f"{HEADER}: empty")
    if not all(" " <= char <= "~" for char in key):
        raise InvalidRequestError(f"{HEADER}: printable ASCII characters only")
    if len(key) > KEY_LENGTH_MAX:
        raise InvalidRequestError(f"{HEADER}: at most {KEY_LENGTH_MAX} characters")
    return key


def _unquote(quoted: str) -> str:
    """The text of a structured-field string (RFC 8941 3.3.3)."""
    if len(quoted) < 2 or not quoted.endswith('"'):
        raise InvalidRequestError(f"{HEADER}: a quoted key ends with a quote")
    text, escaped = [], False
    for char in quoted[1:-1]:
        if escaped:
            if char not in '"\\':
                raise InvalidRequestError(f'{HEADER}: only \\" and \\\\ are escapes')
            text.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            raise InvalidRequestError(f'{HEADER}: a quote inside a quoted key needs \\"')
        else:
            text.append(char)
    if escaped:
        raise InvalidRequestError(f"{HEADER}: a quoted key ends with a quote")
    return "".join(text)


def idempotent(view):
    """Run the view once per caller and Idempotency-Key; a repeat gets the first answer.

    Goes below the role check (the caller is known and may change things) and above
    ``@accepts``: a body refused with a 400 is an answer like any other. Without the header
    the view runs as it would without this. Answers of 500 and more are not kept: a retry
    runs again (the cloud or the database failed, a warm pool was empty).
    """

    @functools.wraps(view)
    def once(*args, **kwargs):
        header = request.headers.get(HEADER)
        if header is None:
            return view(*args, **kwargs)
        key = parse_key(header)
        request_fingerprint = idempotency.fingerprint(
            request.method, request.path, request.get_data(cache=True)
        )
        claimed = idempotency.claim(current_user.id, key, request_fingerprint)
        if isinstance(claimed, idempotency.StoredAnswer):
            return _replay(claimed)
        response = _answer(view, args, kwargs)
        db.session.rollback()  # whatever the view left undone stays undone
        if response.status_code >= 500:
            idempotency.give_back(claimed)
        else:
            idempotency.store(claimed, response.status_code, response.get_data(as_text=True))
        return response

    once.idempotent = True  # read by the OpenAPI document
    return once


def _answer(view, args, kwargs):
    """The view's response, or that of the error it raised: made by the app's error
    handlers, as it would be without the header."""
    try:
        returned = view(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 (the app's handlers answer for every one)
        returned = current_app.handle_user_exception(exc)
    return current_app.make_response(returned)


def _replay(answer: idempotency.StoredAnswer):
    response = current_app.response_class(
        answer.body, status=answer.status, mimetype="application/json"
    )
    response.headers[REPLAYED_HEADER] = "true"
    return response
