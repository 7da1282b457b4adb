"""Views of the assignment bookkeeping: assign, release, status and history."""

from flask import request
from flask_security import current_user

from .. import operations
from ..validation import ASSIGN, RELEASE, limit, validate
from .base import ApiView, agent_required, json_body, ok

HISTORY_LIMIT_DEFAULT = 50


class AssignAPI(ApiView):
    """``PUT /api/v1/vm/action/assign[/<cloud>]``: give a free VM to a user."""

    @agent_required
    def put(self, cloud):
        body = validate(ASSIGN, json_body())
        return ok(**operations.assign_vm(cloud, current_user.username, **body))


class ReleaseAPI(ApiView):
    """``PUT /api/v1/vm/action/release[/<cloud>]``: free an assigned VM and destroy it."""

    @agent_required
    def put(self, cloud):
        body = validate(RELEASE, json_body())
        return ok(**operations.release_vm(cloud, current_user.username, **body))


class AssignmentStatusAPI(ApiView):
    """``GET /api/v1/vm/status[/<cloud>]``: the free and assigned VMs."""

    def get(self, cloud):
        return ok(**operations.assignment_status(cloud))


class HistoryAPI(ApiView):
    """``GET /api/v1/vm/history[/<cloud>]?limit=N``: assigns and releases, newest first."""

    def get(self, cloud):
        count = limit(
            request.args.get("limit"), HISTORY_LIMIT_DEFAULT, operations.HISTORY_LIMIT_MAX
        )
        return ok(**operations.assignment_history(cloud, count))
