"""Every reach of the dispatcher into an internal of Flask-Login, Flask-Principal or
Flask-Security-Too: one small function each, saying which internal it relies on and why
the public API does not do. Nothing else of the dispatcher touches those internals;
tests/test_library_seams.py fails when a library changes one of them underneath.
"""

from datetime import timedelta

from flask import current_app, g
from flask_login import current_user, user_loaded_from_request
from flask_security.utils import get_request_attr, parse_auth_token, set_request_attr


def set_request_user(user) -> None:
    """Make ``user`` the request's user as Flask-Login's request loader would:
    ``current_user`` is it from now on, and ``user_loaded_from_request`` is sent (the
    request log names the caller from it).

    Relies on Flask-Login keeping the request's user in ``g._login_user``
    (``LoginManager._update_request_context_with_user``), which ``current_user`` returns
    without calling any loader. The public ``login_user`` writes the session, which a
    token API does not have (``token_check.NoSessions``), and sends ``user_logged_in``,
    a login rather than a request that carries a token. ``fs_authn_via`` is
    Flask-Security-Too's public request attribute: its own checks, should any run, take
    the request as authenticated by token and do not load the user again.
    """
    g._login_user = user
    set_request_attr("fs_authn_via", "token")
    user_loaded_from_request.send(current_app._get_current_object(), user=user)


def request_user():
    """The user ``set_request_user`` made the request's; None if it was not called."""
    if get_request_attr("fs_authn_via") != "token":
        return None
    return current_user._get_current_object()


def drop_principal_identity(app) -> None:
    """Take Flask-Principal's identity off ``app``'s requests.

    Its ``before_request`` hook asks every identity loader, and Flask-Security-Too's asks
    for ``current_user``: before any view, a public one too, the request's token would be
    checked and an identity built that nothing of the dispatcher reads (the views check
    the caller's roles themselves).

    Relies on Flask-Security-Too keeping the ``Principal`` its ``init_app`` always makes
    as ``Security.principal``, and on Flask-Principal's ``init_app`` registering its
    bound method ``_on_before_request`` as an app-wide ``before_request`` function.
    Neither library offers to leave the hook out or take it off.
    """
    principal = app.extensions["security"].principal
    hooks = app.before_request_funcs.get(None, [])
    hooks[:] = [hook for hook in hooks if getattr(hook, "__self__", None) is not principal]


def wrap_token_serializer(security, wrapper: type) -> None:
    """Put ``wrapper(serializer)`` in place of Flask-Security-Too's token serializer,
    unless it is one already.

    Relies on ``Security.remember_token_serializer`` (an itsdangerous
    ``URLSafeTimedSerializer`` made by ``init_app``) being what
    ``UserMixin.get_auth_token`` signs with and ``parse_auth_token`` reads with. No
    setting chooses the serializer, or lets the dispatcher look at a token's text before
    it is read.
    """
    serializer = security.remember_token_serializer
    if not isinstance(serializer, wrapper):
        security.remember_token_serializer = wrapper(serializer)


def parse_token(token: str) -> dict:
    """The data of a token, checked as Flask-Security-Too checks it: its signature, its age
    (SECURITY_TOKEN_MAX_AGE) and its own end (``exp``).

    Relies on ``flask_security.utils.parse_auth_token``, which the package does not
    export. Its public users (``auth_required("token")``, the request loader) also load
    the user through the datastore on every call, which the cache of verified tokens is
    there to skip.

    :raises itsdangerous.BadData: a bad signature, or a token too old.
    :raises ValueError, KeyError, TypeError: a token signed but not of the expected shape.
    """
    return parse_auth_token(token)


def token_uniquifier(data: dict) -> str:
    """The token uniquifier of the user a token's data (``parse_token``) stands for.

    Relies on the layout of Flask-Security-Too's tokens (version 5): the user's
    ``fs_token_uniquifier`` under ``uid``. The library only reads it in its own request
    loader.
    """
    return data["uid"]


def token_end(data: dict, max_age: float | timedelta) -> float:
    """When a token stops being accepted (seconds since the epoch), as ``parse_auth_token``
    decides: ``max_age`` (SECURITY_TOKEN_MAX_AGE: seconds, or the timedelta
    Flask-Security-Too turns them into at ``init_app``) after its issue, or its own end
    if that is earlier.

    Relies on the layout of Flask-Security-Too's tokens (version 5): the time of issue
    under ``fs_paa`` and the token's own end, if any, under ``exp``. The library says
    when a token ends only by refusing it.
    """
    if isinstance(max_age, timedelta):
        max_age = max_age.total_seconds()
    ends = [float(data.get("fs_paa", 0)) + max_age]
    if data.get("exp"):
        ends.append(float(data["exp"]))
    return min(ends)
