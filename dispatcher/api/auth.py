"""Views of authentication: getting a token, revoking it, checking it."""

from flask import request
from flask_security import current_user

from .. import auth
from ..shapes import TEXT, const, list_of
from ..validation import CREDENTIALS
from .base import ApiView, PublicView, accepts, answers, ok, token_required


class AuthAPI(PublicView):
    """``/api/v1/auth``: a token for a username and password; DELETE revokes the caller's."""

    @accepts(CREDENTIALS)
    @answers({"status_code": const(200), "token": TEXT})
    def post(self, body):
        """A token for a username and password (no token needed).

        After LOGIN_FAILURE_LIMIT refusals for a username from one client, a 429 with
        Retry-After until the window is over, whatever the password.
        """
        with auth.login_attempt(body["username"], request.remote_addr or "-"):
            token = auth.issue_token(**body)
        return ok(status_code=200, token=token)

    @token_required
    @answers({"user": TEXT, "roles": list_of(TEXT)})
    def get(self):
        """Who the token is: its user and roles (what a client such as the console may
        offer it)."""
        return ok(user=current_user.username, roles=sorted(current_user.roles))

    @token_required
    @answers({"result": TEXT})
    def delete(self):
        """Revoke every token of the caller."""
        auth.revoke_tokens(auth.get_user(current_user.username))
        return ok(result="tokens revoked")


class TokenCheckAPI(ApiView):
    """``/api/v1/test/start``: the original's connection check for a token."""

    @answers({"test": const("passed"), "authenticated": const("yes")})
    def put(self):
        """Check that the token is valid."""
        return ok(test="passed", authenticated="yes")
