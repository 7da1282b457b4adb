"""Views of the assignment bookkeeping: assign, release, status and history."""

from flask import request
from flask_security import current_user

from .. import operations
from ..validation import ASSIGN, RELEASE, limit
from .base import ApiView, accepts, agent_required, ok

HISTORY_LIMIT_DEFAULT = 50


class AssignAPI(ApiView):
    """``PUT /api/v1/vm/action/assign[/<cloud>]``: give a free VM to a user."""

    @agent_required
    @accepts(ASSIGN)
    def put(self, cloud, body):
        """Assign a free VM to a user for an application (vm_type)."""
        return ok(**operations.assign_vm(cloud, current_user.username, **body))


class ReleaseAPI(ApiView):
    """``PUT /api/v1/vm/action/release[/<cloud>]``: free an assigned VM and destroy it."""

    @agent_required
    @accepts(RELEASE)
    def put(self, cloud, body):
        """Release an assigned VM, then destroy it."""
        return ok(**operations.release_vm(cloud, current_user.username, **body))


class AssignmentStatusAPI(ApiView):
    """``GET /api/v1/vm/status[/<cloud>]``: the free and assigned VMs."""

    def get(self, cloud):
        """The free and assigned VMs of the cloud."""
        return ok(**operations.assignment_status(cloud))


class HistoryAPI(ApiView):
    """``GET /api/v1/vm/history[/<cloud>]?limit=N``: assigns and releases, newest first."""

    def get(self, cloud):
        """The assigns and releases of the cloud, newest first."""
        count = limit(
            request.args.get("limit"), HISTORY_LIMIT_DEFAULT, operations.HISTORY_LIMIT_MAX
        )
        return ok(**operations.assignment_history(cloud, count))
