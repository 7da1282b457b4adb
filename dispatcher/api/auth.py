"""Views of authentication: getting a token, revoking it, checking it."""

from flask_security import current_user

from .. import auth
from ..validation import CREDENTIALS
from .base import ApiView, PublicView, accepts, ok, token_required


class AuthAPI(PublicView):
    """``/api/v1/auth``: a token for a username and password; DELETE revokes the caller's."""

    @accepts(CREDENTIALS)
    def post(self, body):
        """A token for a username and password (no token needed)."""
        return ok(status_code=200, token=auth.issue_token(**body))

    @token_required
    def delete(self):
        """Revoke every token of the caller."""
        auth.revoke_tokens(current_user)
        return ok(result="tokens revoked")


class TokenCheckAPI(ApiView):
    """``/api/v1/test/start``: the original's connection check for a token."""

    def put(self):
        """Check that the token is valid."""
        return ok(test="passed", authenticated="yes")
