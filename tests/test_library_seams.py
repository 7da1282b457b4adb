"""The internals of Flask-Login, Flask-Principal and Flask-Security-Too that the dispatcher
relies on (dispatcher/auth/library_seams.py), one test each: a test here fails when a
library changes one of them underneath, before the token check silently does."""

import time

import flask
import pytest
from flask_login import current_user, user_loaded_from_request
from flask_principal import Principal, identity_loaded
from flask_security import current_user as security_current_user
from flask_security.utils import get_request_attr
from itsdangerous import BadSignature, SignatureExpired

from dispatcher import auth
from dispatcher.auth import library_seams
from dispatcher.auth.token_cache import Caller
from dispatcher.auth.tokens import AsIssuedTokenSerializer
from dispatcher.extensions import security

LISTING = "/api/v1/nodes/fake_driver"
CALLER = Caller(7, "carol", "carol-uniquifier", frozenset({"agent"}))


def issued(app, username="alice"):
    """A user's token, its user's token uniquifier, and the time it was issued."""
    with app.app_context():
        user = auth.create_user(username, "correct horse battery", roles=("agent",))
        before = time.time()
        return user.get_auth_token(), user.fs_token_uniquifier, before


def test_the_user_set_is_flask_logins_current_user(app):
    """Flask-Login's ``g._login_user``: once the seam has set the caller, ``current_user``
    (Flask-Login's and Flask-Security-Too's) is it, without any loader asked, and
    ``user_loaded_from_request`` (the request log's caller) has been heard."""
    heard = []

    def hear(sender, user):
        heard.append(user)

    with app.test_request_context(LISTING):
        assert library_seams.request_user() is None
        with user_loaded_from_request.connected_to(hear, app):
            library_seams.set_request_user(CALLER)
        assert current_user._get_current_object() is CALLER
        assert security_current_user._get_current_object() is CALLER
        assert get_request_attr("fs_authn_via") == "token"
        assert library_seams.request_user() is CALLER
    assert heard == [CALLER]


def test_without_the_seam_the_request_has_no_user(app):
    """The other side of the above: a request without a token is anonymous, so that the
    user above is the seam's doing and not a loader's."""
    with app.test_request_context(LISTING):
        assert not current_user.is_authenticated
        assert library_seams.request_user() is None


def test_principal_hooks_its_identity_before_each_request():
    """Flask-Principal's ``init_app`` registers its bound ``_on_before_request`` as an
    app-wide ``before_request`` function: what ``drop_principal_identity`` takes off."""
    bare = flask.Flask(__name__)
    principal = Principal(bare, use_sessions=False)
    [hook] = bare.before_request_funcs[None]
    assert hook.__self__ is principal
    assert hook.__func__ is Principal._on_before_request


def test_security_keeps_its_principal_and_the_app_runs_without_its_hook(app):
    """Flask-Security-Too's ``Security.principal`` is the Principal it made; on the app no
    hook of it is left, and a request with a token builds no identity."""
    assert isinstance(app.extensions["security"].principal, Principal)
    principal = app.extensions["security"].principal
    hooks = app.before_request_funcs.get(None, [])
    assert not [hook for hook in hooks if getattr(hook, "__self__", None) is principal]
    token, _, _ = issued(app)
    built = []
    with identity_loaded.connected_to(lambda sender, identity: built.append(identity), app):
        answer = app.test_client().get(LISTING, headers={"X-Auth-Token": token})
    assert answer.status_code == 200
    assert built == []


class Recording:
    """A token serializer that notes what is asked of the one it wraps."""

    calls: list[str] = []

    def __init__(self, serializer):
        self.serializer = serializer

    def dumps(self, *args, **kwargs):
        Recording.calls.append("dumps")
        return self.serializer.dumps(*args, **kwargs)

    def loads(self, *args, **kwargs):
        Recording.calls.append("loads")
        return self.serializer.loads(*args, **kwargs)


def test_the_token_serializer_signs_and_reads_every_token(app):
    """Flask-Security-Too's ``Security.remember_token_serializer``: the dispatcher's is in
    place, and the one put there is what ``get_auth_token`` signs with and
    ``parse_auth_token`` reads with."""
    assert isinstance(security.remember_token_serializer, AsIssuedTokenSerializer)
    original = security.remember_token_serializer
    Recording.calls = []
    try:
        library_seams.wrap_token_serializer(security, Recording)
        library_seams.wrap_token_serializer(security, Recording)  # once only
        assert security.remember_token_serializer.serializer is original
        token, _, _ = issued(app)
        with app.app_context():
            library_seams.parse_token(token)
    finally:
        security.remember_token_serializer = original
    assert Recording.calls == ["dumps", "loads"]


def test_a_token_is_parsed_as_flask_security_checks_it(app):
    """``flask_security.utils.parse_auth_token``: the data of a token as issued, under its
    layout's keys (``uid`` its user's token uniquifier); a bad signature refused."""
    token, uniquifier, before = issued(app)
    with app.app_context():
        data = library_seams.parse_token(token)
        assert library_seams.token_uniquifier(data) == uniquifier
        assert before <= data["fs_paa"] <= time.time()
        with pytest.raises(BadSignature):
            library_seams.parse_token(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))


def parsed_at(app, token, moment):
    """``parse_token`` of ``token`` as if the clock said ``moment``: the data, or the error."""
    real = time.time
    with app.app_context():
        time.time = lambda: moment
        try:
            return library_seams.parse_token(token)
        except SignatureExpired as exc:
            return exc
        finally:
            time.time = real


@pytest.mark.parametrize("max_age", [60, 3600])
def test_a_token_ends_when_token_end_says(make_app, max_age):
    """``fs_paa`` the time of issue, SECURITY_TOKEN_MAX_AGE (a timedelta once
    Flask-Security-Too has read it) after it the token's end: accepted a second before
    ``token_end``, refused two after (itsdangerous counts whole seconds)."""
    app = make_app(SECURITY_TOKEN_MAX_AGE=max_age)
    token, _, _ = issued(app)
    with app.app_context():
        data = library_seams.parse_token(token)
    ends = library_seams.token_end(data, app.config["SECURITY_TOKEN_MAX_AGE"])
    assert ends == pytest.approx(data["fs_paa"] + max_age)
    assert library_seams.token_end(data, max_age) == ends
    assert isinstance(parsed_at(app, token, ends - 1), dict)
    assert isinstance(parsed_at(app, token, ends + 2), SignatureExpired)


def test_a_tokens_own_end_comes_first(make_app):
    """``exp`` (SECURITY_TOKEN_EXPIRE_TIMESTAMP) before MAX_AGE's end: that is the end."""
    own_end = int(time.time()) + 30
    app = make_app(SECURITY_TOKEN_EXPIRE_TIMESTAMP=lambda user: own_end)
    token, _, _ = issued(app)
    with app.app_context():
        data = library_seams.parse_token(token)
    ends = library_seams.token_end(data, app.config["SECURITY_TOKEN_MAX_AGE"])
    assert ends == own_end
    assert isinstance(parsed_at(app, token, ends - 1), dict)
    assert isinstance(parsed_at(app, token, ends + 2), SignatureExpired)
