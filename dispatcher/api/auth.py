"""Views of authentication: getting a token, revoking it, checking it."""

from flask import current_app, request
from flask_security import current_user

from .. import auth
from ..errors import InvalidRequestError
from ..extensions import limiter
from ..shapes import TEXT, const
from ..validation import CREDENTIALS
from .base import ApiView, PublicView, accepts, answers, json_body, ok, token_required


def _login_attempt_key() -> str:
    """Failed logins count per client address and username."""
    try:
        body = json_body()
    except InvalidRequestError:
        body = None
    username = body.get("username") if isinstance(body, dict) else None
    return f"{request.remote_addr}|{username if isinstance(username, str) else ''}"


login_throttle = limiter.limit(
    lambda: current_app.config["LOGIN_FAILURE_LIMIT"],
    key_func=_login_attempt_key,
    methods=["POST"],
    # Only refusals count: an agent that logs in often with the right password is
    # never throttled; once throttled, the right password waits too.
    deduct_when=lambda response: response.status_code == 403,
    error_message="Too many failed logins: try again later",
)


class AuthAPI(PublicView):
    """``/api/v1/auth``: a token for a username and password; DELETE revokes the caller's."""

    decorators = [login_throttle]

    @accepts(CREDENTIALS)
    @answers({"status_code": const(200), "token": TEXT})
    def post(self, body):
        """A token for a username and password (no token needed)."""
        return ok(status_code=200, token=auth.issue_token(**body))

    @token_required
    @answers({"result": TEXT})
    def delete(self):
        """Revoke every token of the caller."""
        auth.revoke_tokens(current_user)
        return ok(result="tokens revoked")


class TokenCheckAPI(ApiView):
    """``/api/v1/test/start``: the original's connection check for a token."""

    @answers({"test": const("passed"), "authenticated": const("yes")})
    def put(self):
        """Check that the token is valid."""
        return ok(test="passed", authenticated="yes")
