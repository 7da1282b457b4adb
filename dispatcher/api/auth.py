"""Views of authentication: getting a token, revoking it, checking it."""

from flask_security import auth_required, current_user

from .. import auth
from ..validation import CREDENTIALS, validate
from .base import ApiView, PublicView, json_body, ok


class AuthAPI(PublicView):
    """``/api/v1/auth``: a token for a username and password; DELETE revokes the caller's."""

    def post(self):
        credentials = validate(CREDENTIALS, json_body())
        return ok(status_code=200, token=auth.issue_token(**credentials))

    @auth_required("token")
    def delete(self):
        auth.revoke_tokens(current_user)
        return ok(result="tokens revoked")


class TokenCheckAPI(ApiView):
    """``/api/v1/test/start``: the original's connection check for a token."""

    def put(self):
        return ok(test="passed", authenticated="yes")
