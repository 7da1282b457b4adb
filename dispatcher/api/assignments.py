"""Views of the assignment bookkeeping: assign, release, extend, status and history."""

from flask_security import current_user

from .. import bookkeeping, clouds, history, operations
from ..models import ACTIONS, ADMIN
from ..serializers import assignment_to_dict, audit_entry_to_dict
from ..shapes import ANY, ARRAY, INTEGER_OR_NULL, TEXT, TEXT_OR_NULL, list_of
from ..validation import ASSIGN, EXTEND, RELEASE
from .base import ApiView, accepts, agent_required, answers, ok, query
from .idempotency import idempotent
from .parameters import choice, limit, text, whole_number

# What an assign or a release answers, as Cistern does.
BOOKKEEPING_ANSWER = {"id_vm": ANY, "id": ANY, "result": TEXT_OR_NULL}
# What an assign by vm_type from a warm pool answers besides: where the VM is.
POOL_ANSWER = {"cloud": TEXT, "hostname": TEXT_OR_NULL, "public_ips": ARRAY, "private_ips": ARRAY}
# A leased VM's end, ISO 8601 in UTC.
LEASE_END = {"expires_at": TEXT}


def _is_admin() -> bool:
    return current_user.has_role(ADMIN)


class AssignAPI(ApiView):
    """``PUT /api/v1/vm/action/assign[/<cloud>]``: give a free VM to a user."""

    @agent_required
    @idempotent
    @accepts(ASSIGN)
    @answers(BOOKKEEPING_ANSWER, optional={**POOL_ANSWER, **LEASE_END})
    def put(self, cloud, body):
        """Assign a free VM to a user for an application (vm_type): the VM named, or
        without node and hostname a free VM of the warm pool of that vm_type (503 with
        Retry-After when it has none). ``lease`` (seconds) makes the assignment end then
        (400 beyond the cap); without it the pool's or the default lease applies, if any.
        ``tags`` label the assignment until its end (400 beyond TAG_MAX keys, without a
        key its pool requires, or beside Cistern)."""
        caller = current_user.username
        if "node" not in body and "hostname" not in body:
            named = clouds.get(cloud) if cloud is not None else None
            return ok(**operations.assign_from_pool(named, caller, **body))
        return ok(**operations.assign_vm(clouds.get(cloud), caller, **body))


class ReleaseAPI(ApiView):
    """``PUT /api/v1/vm/action/release[/<cloud>]``: free an assigned VM and destroy it."""

    @agent_required
    @idempotent
    @accepts(RELEASE)
    @answers(BOOKKEEPING_ANSWER)
    def put(self, cloud, body):
        """Release an assigned VM, then destroy it. A leased VM only by the caller who
        assigned it, or an admin (403 otherwise)."""
        caller = current_user.username
        released = operations.release_vm(clouds.get(cloud), caller, admin=_is_admin(), **body)
        return ok(**released)


class ExtendAPI(ApiView):
    """``PUT /api/v1/vm/action/extend[/<cloud>]``: a new end for an assigned VM's lease."""

    @agent_required
    @idempotent
    @accepts(EXTEND)
    @answers({**BOOKKEEPING_ANSWER, **LEASE_END})
    def put(self, cloud, body):
        """Make an assigned VM's lease end ``lease`` seconds from now, within its cap (400
        beyond); ``tags`` replace its tags ({} clears them), which it keeps without. Only
        the caller who assigned it, or an admin, may (403 otherwise); 409 for a VM that is
        not assigned."""
        caller = current_user.username
        extended = operations.extend_vm(clouds.get(cloud), caller, admin=_is_admin(), **body)
        return ok(**extended)


class AssignmentStatusAPI(ApiView):
    """``GET /api/v1/vm/status[/<cloud>]``: the free and assigned VMs."""

    @answers({"nodes": list_of(assignment_to_dict)})
    def get(self, cloud):
        """The free and assigned VMs of the cloud."""
        return ok(nodes=bookkeeping.backend().nodes(clouds.get(cloud).name))


class HistoryAPI(ApiView):
    """``GET /api/v1/vm/history[/<cloud>]?limit=N&user=U&action=A&before=ID``: assigns,
    releases and the rest, newest first."""

    @query(
        limit=limit(history.LIMIT_MAX, history.LIMIT_DEFAULT),
        user=text("user"),
        action=choice("action", ACTIONS),
        before=whole_number("before", history.ID_MAX),
    )
    @answers({"history": list_of(audit_entry_to_dict), "next_before": INTEGER_OR_NULL})
    def get(self, cloud, limit, user, action, before):
        """The history of the cloud, newest first: ``limit`` entries (50 by default, at
        most 1000), only those about ``user`` (whose VM it was, or who asked) and of
        ``action`` (one the history records) where given, older than the entry ``before``.
        ``next_before`` is the ``before`` of the next page (null on the last)."""
        wanted = limit or history.LIMIT_DEFAULT
        entries = history.entries(clouds.get(cloud).name, wanted, user, action, before)
        next_before = entries[-1]["id"] if len(entries) == min(wanted, history.LIMIT_MAX) else None
        return ok(history=entries, next_before=next_before)
