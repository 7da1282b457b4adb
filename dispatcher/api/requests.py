"""Views of the requests for VMs that wait in line: ask, look, list, cancel."""

from flask import url_for
from flask_security import current_user

from .. import operations, requests
from ..models import ADMIN
from ..operations.requests import request_to_dict
from ..shapes import list_of
from ..validation import REQUEST
from .base import ApiView, accepts, agent_required, answers, ok, query
from .idempotency import idempotent
from .parameters import choice, text

ANSWER = {"request": request_to_dict}


def _is_admin() -> bool:
    return current_user.has_role(ADMIN)


class RequestsAPI(ApiView):
    """``/api/v1/requests``: ask for VMs of several pools at once; list the requests."""

    @agent_required
    @idempotent
    @accepts(REQUEST)
    @answers(ANSWER, accepted=True)
    def post(self, body):
        """Ask for the VMs of ``vms`` (``{"web": 2, "db": 1}``) for ``user``: 200 with
        them all when they are free now and no request waits ahead for their types, else
        202 and a place in line (``Location`` names the request), served by priority
        (``priority`` 1 first, 2 by default, 3 last) then age, all at once or not at all,
        until ``expires_in`` seconds have passed; ``tags`` go onto each of its VMs (400
        without a key one of its pools requires). The local ledger's pools only: 400
        beside Cistern."""
        shown, ready = operations.request_vms(current_user.username, body)
        answer = ok(request=shown)
        if not ready:
            answer.status_code = 202
            answer.headers["Location"] = url_for(".request", request_id=shown["id"])
        return answer

    @query(state=choice("state", requests.STATES), user=text("user"))
    @answers({"requests": list_of(request_to_dict)})
    def get(self, state, user):
        """The requests, the newest first (at most 1000): an admin's of everyone (only
        those ``user`` made if given), anyone else's their own; only those in ``state``
        if given."""
        caller = current_user.username
        return ok(requests=operations.list_requests(caller, _is_admin(), state, user))


class RequestAPI(ApiView):
    """``/api/v1/requests/<id>``: one request, seen or cancelled by its asker or an admin."""

    @answers(ANSWER)
    def get(self, request_id):
        """The request: its state, its place in line and estimated wait while pending,
        its VMs once ready."""
        shown = operations.show_request(request_id, current_user.username, _is_admin())
        return ok(request=shown)

    @agent_required
    @idempotent
    @answers(ANSWER)
    def delete(self, request_id):
        """Cancel the request: the VMs set aside for it go back to their pools; a ready
        request's VMs are released as a release would."""
        shown = operations.cancel_request(request_id, current_user.username, _is_admin())
        return ok(request=shown)
